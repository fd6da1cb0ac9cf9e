"""Connecting: what waiting can heal is retried until --connect-timeout (exit 4), what it cannot
is refused at once (exit 2); passwords reach the driver exactly and never reach any output.

Password authentication needs a server that asks for one: `password_server` is an embedded
PostgreSQL of this module's own whose pg_hba.conf demands scram-sha-256 from every role but
the bootstrap superuser.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
import pytest
from helpers import error_lines, fetch

from migrator import connections
from migrator.config import DatabaseUrl
from migrator.embedded import ensure_server, stop_server
from migrator.errors import TargetRefused

SPACED = "two words"
# A password with every character a URL treats specially, distinctive enough to grep for.
NASTY = "Zq9/pa:ss@w%rd#?&x"
CLOSED = "127.0.0.1:1"  # nothing listens on port 1


@pytest.fixture(scope="module")
def password_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL (without password) of a server where role `pw` must give its password."""
    pgdata = tmp_path_factory.mktemp("pwserver") / "pgdata"
    url = ensure_server(pgdata)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"CREATE ROLE pw LOGIN PASSWORD '{SPACED}'")
            conn.execute(f"CREATE ROLE nasty LOGIN PASSWORD '{NASTY}'")
        hba = pgdata / "pg_hba.conf"
        hba.write_text("local all postgres trust\nlocal all all scram-sha-256\n"
                       "host all postgres 127.0.0.1/32 trust\n"
                       "host all all 127.0.0.1/32 scram-sha-256\n")
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("SELECT pg_reload_conf()")
        yield url
    finally:
        stop_server(pgdata)


def as_role(url: str, role: str, **query: str) -> str:
    base = url.replace("postgresql://postgres@", f"postgresql://{role}@")
    return base + "".join(f"&{key}={value}" for key, value in query.items())


def test_a_percent_20_password_authenticates_as_a_space(password_server: str) -> None:
    url = DatabaseUrl.parse(as_role(password_server, "pw", password="two%20words"), source="t")
    assert url.password == SPACED
    with connections.connect(url, timeout=5) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("pw",)


def test_a_password_with_url_characters_authenticates_in_every_form(
    password_server: str,
) -> None:
    """Encoded in the userinfo, unencoded in the userinfo, in ?password=, and in a
    keyword/value string: each reaches the server as written."""
    from urllib.parse import parse_qs, urlsplit

    socket = {key: values[0] for key, values in
              parse_qs(urlsplit(password_server).query).items()}
    raw = NASTY.replace("#", "").replace("?", "")  # '#' and '?' must be encoded in a URL
    forms = [
        (password_server.replace("postgres@", f"nasty:{quote(NASTY, safe='')}@"), NASTY),
        (as_role(password_server, "nasty", password=quote(NASTY, safe="")), NASTY),
        (f"user=nasty dbname=postgres password='{NASTY}' host={socket['host']} "
         f"port={socket['port']}", NASTY),
    ]
    with psycopg.connect(password_server, autocommit=True) as conn:
        conn.execute(f"ALTER ROLE nasty PASSWORD '{NASTY}'")
    for form, password in forms:
        url = DatabaseUrl.parse(form, source="t")
        assert url.password == password, form
        with connections.connect(url, timeout=5) as conn:
            assert conn.execute("SELECT current_user").fetchone() == ("nasty",)
    # Unencoded in the userinfo ('/', ':', '@' and '%' as written).
    with psycopg.connect(password_server, autocommit=True) as conn:
        conn.execute(f"ALTER ROLE nasty PASSWORD '{raw}'")
    url = DatabaseUrl.parse(password_server.replace("postgres@", f"nasty:{raw}@"), source="t")
    assert url.password == raw
    with connections.connect(url, timeout=5) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("nasty",)


@pytest.mark.parametrize(("change", "said"), [
    ({"password": "wrong%20words"}, "password authentication failed"),
    ({"role": "nobody_here"}, "nobody_here"),
    ({"database": "no_such_db"}, "no_such_db"),
], ids=["wrong password", "unknown role", "unknown database"])
def test_what_waiting_cannot_heal_exits_2_at_once(
    password_server: str, run_cli: Any, cli_env: dict[str, str], change: dict[str, str],
    said: str, platform: Path,
) -> None:
    url = as_role(password_server, change.get("role", "pw"),
                  password=change.get("password", "two%20words"))
    if "database" in change:
        url = url.replace("/postgres?", f"/{change['database']}?")
    started = time.monotonic()
    result = run_cli("--database-url", url, "--migrations-dir", platform, "--connect-timeout",
                     "60s", "status", env=cli_env)
    elapsed = time.monotonic() - started
    assert result.returncode == 2, result.stderr
    [line] = error_lines(result.stderr)
    assert said in line and "waiting will not help" in line, line
    assert elapsed < 30  # not the 60 s of retries a transient failure would get
    assert "two words" not in result.stderr and "wrong words" not in result.stderr


def test_an_unreachable_server_is_retried_until_the_connect_timeout_then_exit_4(
    run_cli: Any, cli_env: dict[str, str], platform: Path,
) -> None:
    started = time.monotonic()
    result = run_cli("--database-url", f"postgresql://app@{CLOSED}/db", "--migrations-dir",
                     platform, "--connect-timeout", "3s", "status", env=cli_env)
    elapsed = time.monotonic() - started
    assert result.returncode == 4, result.stderr
    assert "unreachable after" in error_lines(result.stderr)[0]
    assert '"db.connect_retry"' in result.stderr
    assert 3 <= elapsed < 10  # the timeout, plus process start-up on a loaded machine


def test_a_read_only_database_exits_2_before_anything_is_written(
    database_url: str, run_cli: Any, cli_env: dict[str, str], tmp_path: Path, platform: Path,
) -> None:
    name = fetch(database_url, "SELECT current_database()")[0][0]
    fetch(database_url, f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
    result = run_cli("--database-url", database_url, "--migrations-dir", platform, "upgrade",
                     env=cli_env)
    assert result.returncode == 2, result.stderr
    assert "is read-only" in error_lines(result.stderr)[0]
    assert fetch(database_url, "SELECT to_regnamespace('migrator') IS NULL") == [(True,)]


def test_sessions_are_immune_to_the_servers_idle_timeouts(database_url: str) -> None:
    name = fetch(database_url, "SELECT current_database()")[0][0]
    fetch(database_url, f"ALTER DATABASE \"{name}\" SET idle_session_timeout = '1s'")
    fetch(database_url, f"ALTER DATABASE \"{name}\" SET idle_in_transaction_session_timeout "
                        "= '1s'")
    with connections.connect(DatabaseUrl.parse(database_url, source="t"), timeout=5) as conn:
        assert conn.execute("SELECT current_setting('idle_session_timeout'), "
                            "current_setting('idle_in_transaction_session_timeout')"
                            ).fetchone() == ("0", "0")


def test_refusal_is_a_target_refused_error_naming_user_host_and_database(
    password_server: str,
) -> None:
    url = DatabaseUrl.parse(as_role(password_server, "pw", password="nope"), source="t")
    with pytest.raises(TargetRefused) as refused:
        connections.connect(url, timeout=30)
    assert "pw@" in str(refused.value) and "/postgres" in str(refused.value)
    assert "nope" not in str(refused.value)


# -- secrets in every form never reach any output --------------------------------------------------


def url_shapes(tmp_path: Path) -> list[tuple[str, dict[str, str]]]:
    """(flag or '', extra environment) for each way to hand migrator a password."""
    file = tmp_path / "url-secret"
    file.write_text(f"postgresql://app:{quote(NASTY, safe='')}@{CLOSED}/db\n")
    return [
        (f"postgresql://app:{quote(NASTY, safe='')}@{CLOSED}/db", {}),
        (f"postgresql://app:{NASTY.replace('#', '').replace('?', '')}@{CLOSED}/db", {}),
        (f"postgresql://app@{CLOSED}/db?password={quote(NASTY, safe='')}", {}),
        (f"host=127.0.0.1 port=1 dbname=db user=app password='{NASTY}'", {}),
        ("", {"MIGRATOR_DATABASE_URL_FILE": str(file)}),
        (f"postgresql://app@{CLOSED}/db", {"PGPASSWORD": NASTY}),
    ]


@pytest.mark.parametrize("shape", range(6), ids=["encoded userinfo", "raw userinfo",
                                                 "?password=", "keyword/value", "_FILE",
                                                 "PGPASSWORD"])
@pytest.mark.parametrize("level", ["info", "debug"])
def test_a_password_in_any_form_appears_in_no_output(
    shape: int, level: str, run_cli: Any, cli_env: dict[str, str], tmp_path: Path,
    platform: Path,
) -> None:
    flag, extra = url_shapes(tmp_path)[shape]
    termination = tmp_path / "termination-log"
    args = (["--database-url", flag] if flag else []) + [
        "--migrations-dir", str(platform), "--connect-timeout", "1s", "--log-level", level,
        "upgrade"]
    result = run_cli(*args, env={**cli_env, **extra,
                                 "MIGRATOR_TERMINATION_LOG": str(termination)})
    assert result.returncode == 4, result.stderr
    output = result.stdout + result.stderr + termination.read_text()
    raw = NASTY.replace("#", "").replace("?", "")
    for form in {NASTY, raw, quote(NASTY, safe=""), quote(raw, safe="")}:
        assert form not in output, form
    assert json.loads(termination.read_text())["outcome"] == "failed"


# -- bad values ----------------------------------------------------------------------------


@pytest.mark.parametrize(("args", "said"), [
    (["--lock-timeout", "0"], "--lock-timeout"),
    (["--lock-timeout", "0.0001"], "--lock-timeout"),
    (["--lock-timeout", "99999999999h"], "out of range"),
    (["--lock-wait", "1e400"], "not a duration"),
    (["--connect-timeout", "nan"], "not a duration"),
    (["--retries", "99999999999999999999999"], "out of range"),
    (["--jobs", "0"], "out of range"),
])
def test_absurd_values_are_one_line_exit_2(
    args: list[str], said: str, run_cli: Any, cli_env: dict[str, str], platform: Path,
) -> None:
    global_args = [a for a in args if a.startswith("--connect")]
    run_args = [a for a in args if not a.startswith("--connect")]
    if global_args:
        run_args, global_args = [], args
    result = run_cli("--database-url", f"postgresql://app@{CLOSED}/db", *global_args,
                     "--migrations-dir", platform, "upgrade", *run_args, env=cli_env)
    assert result.returncode == 2, result.stderr
    [line] = error_lines(result.stderr)
    assert said in line, line
    assert "Traceback" not in result.stderr


def test_unknown_url_parameters_and_non_utf8_url_files_exit_2(
    run_cli: Any, cli_env: dict[str, str], tmp_path: Path,
) -> None:
    unknown = run_cli("--database-url", "postgresql://app@db/x?bogus=1", "status", env=cli_env)
    assert unknown.returncode == 2
    assert "unknown parameter 'bogus'" in error_lines(unknown.stderr)[0]
    file = tmp_path / "url"
    file.write_bytes(b"postgresql://app:\xff\xfe@db/x")
    binary = run_cli("status", env={**cli_env, "MIGRATOR_DATABASE_URL_FILE": str(file)})
    assert binary.returncode == 2
    assert "not UTF-8" in error_lines(binary.stderr)[0]
    assert "Traceback" not in binary.stderr


# -- the local server: refusals, options, retried failures, the deadline ------------------------


def local(database_url: str, **changes: str) -> DatabaseUrl:
    """`database_url` (the per-test database on the trust-auth server) with keywords changed."""
    url = DatabaseUrl.parse(database_url, source="t")
    return DatabaseUrl(params={**url.params, **changes}, passwords=url.passwords)


@pytest.mark.parametrize(("changes", "said"), [
    ({"user": "no_such_role_here"}, 'role "no_such_role_here" does not exist'),
    ({"dbname": "no_such_db_here"}, 'database "no_such_db_here" does not exist'),
    ({"port": "abc"}, "invalid integer value"),
    ({"options": "-c no_such_setting_here=1"}, "unrecognized configuration parameter"),
], ids=["unknown role", "unknown database", "bad port", "unknown server setting"])
def test_refusals_are_immediate(database_url: str, changes: dict[str, str], said: str) -> None:
    started = time.monotonic()
    with pytest.raises(TargetRefused) as refused:
        connections.connect(local(database_url, **changes), timeout=30)
    assert time.monotonic() - started < 15  # not the 30 s a transient failure would get
    assert said in str(refused.value) and "waiting will not help" in str(refused.value)


def test_wait_exits_2_on_a_refusal_and_keeps_waiting_while_unreachable(
    database_url: str, run_cli: Any, cli_env: dict[str, str], platform: Path,
) -> None:
    unknown_role = database_url.replace("postgres@", "no_such_role_here@", 1)
    started = time.monotonic()
    refused = run_cli("--database-url", unknown_role, "--migrations-dir", platform, "wait",
                      "--timeout", "30s", env=cli_env)
    assert refused.returncode == 2, refused.stderr
    assert time.monotonic() - started < 15
    assert "no_such_role_here" in error_lines(refused.stderr)[0]
    unreachable = run_cli("--database-url", f"postgresql://app@{CLOSED}/db", "--migrations-dir",
                          platform, "wait", "--timeout", "1s", env=cli_env)
    assert unreachable.returncode == 3, unreachable.stderr


def test_the_urls_own_options_are_kept_and_the_idle_timeouts_still_off(database_url: str) -> None:
    url = local(database_url, options="-c statement_timeout=4321 -c idle_session_timeout=5s")
    with connections.connect(url, timeout=5) as conn:
        assert conn.execute("SELECT current_setting('statement_timeout'), "
                            "current_setting('idle_session_timeout'), "
                            "current_setting('idle_in_transaction_session_timeout'), "
                            "current_setting('application_name')").fetchone() == (
            "4321ms", "0", "0", connections.application_name())


def test_too_many_connections_is_retried_until_the_timeout(database_url: str) -> None:
    """53300 heals when other sessions end: retried, then exit 4 — not refused."""
    from uuid import uuid4

    from migrator.errors import DatabaseUnreachable

    role = f"full_{uuid4().hex[:8]}"
    fetch(database_url, f'CREATE ROLE "{role}" LOGIN CONNECTION LIMIT 0')
    try:
        started = time.monotonic()
        with pytest.raises(DatabaseUnreachable) as unreachable:
            connections.connect(local(database_url, user=role), timeout=2)
        elapsed = time.monotonic() - started
        assert "too many connections" in str(unreachable.value)
        assert 2 <= elapsed < 4.5
    finally:
        fetch(database_url, f'DROP ROLE "{role}"')


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts TCP connections and never answers: libpq waits for the server's
    reply until its own connect_timeout."""
    import socket
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        listener.close()


def test_a_silent_server_is_given_up_on_at_the_timeout(silent_port: int) -> None:
    """Each attempt's libpq connect_timeout is capped by the time left: the total stays within
    a second or two of `timeout` (it used to be nearly twice it)."""
    from migrator.errors import DatabaseUnreachable

    url = DatabaseUrl.parse(f"postgresql://app@127.0.0.1:{silent_port}/db", source="t")
    started = time.monotonic()
    with pytest.raises(DatabaseUnreachable):
        connections.connect(url, timeout=5)
    assert 5 <= time.monotonic() - started < 7.5
