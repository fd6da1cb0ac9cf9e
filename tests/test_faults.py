"""Faults during a run: kill -9, signals, held table locks, dropped connections, leaked secrets.

Real processes, real signals and a real PostgreSQL server; the revisions that must be caught
in flight sleep in the database (`pg_sleep`) for as long as `TEST_REVISION_SLEEP` says.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import psycopg
import pytest
from helpers import error_lines, fetch, version_of, wait_until

from migrator.locking import plugin_key

Logs = Callable[[str], list[dict[str, Any]]]
Tree = Callable[[str], Path]
SECRET = "S3cretPassw0rd"
DEADLINE = 60.0  # seconds any awaited state may take on a loaded machine


def cli_env_for(cli_env: dict[str, str], database_url: str, tree: Path,
                **extra: str) -> dict[str, str]:
    return {**cli_env, "MIGRATOR_DATABASE_URL": database_url,
            "MIGRATOR_MIGRATIONS_DIR": str(tree), **extra}


def tables_of(url: str, schema: str) -> set[str]:
    rows = fetch(url, "SELECT tablename FROM pg_tables WHERE schemaname = %s", (schema,))
    return {row[0] for row in rows} - {"alembic_version"}


def history_of(url: str, plugin: str, outcome: str = "applied") -> list[str]:
    """The revisions of `plugin`'s `up` attempts with `outcome`, oldest first."""
    rows = fetch(url, "SELECT revision FROM migrator.history WHERE plugin = %s "
                 "AND direction = 'up' AND outcome = %s ORDER BY id", (plugin, outcome))
    return [row[0] for row in rows]


def sleeping_backend(url: str, process: subprocess.Popen[str]) -> int:
    """Wait until `process`'s work connection runs its revision's pg_sleep; return its pid."""
    deadline = time.monotonic() + DEADLINE
    with psycopg.connect(url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid() AND application_name LIKE 'migrator@%' "
                "AND state = 'active' AND query LIKE '%pg_sleep%'").fetchone()
            if row is not None:
                return int(row[0])
            if process.poll() is not None:
                _, stderr = process.communicate()
                pytest.fail(f"migrator exited {process.returncode} before its slow revision:\n"
                            f"{stderr}")
            time.sleep(0.02)
    pytest.fail("migrator never reached its slow revision")


def assert_at_head(url: str, plugin: str, revisions: list[str], tables: set[str]) -> None:
    assert version_of(url, plugin) == [revisions[-1]]
    assert tables_of(url, plugin) == tables
    assert history_of(url, plugin) == revisions


# -- kill -9 ---------------------------------------------------------------------------------


def test_kill_9_mid_revision_leaves_a_boundary_and_a_rerun_reaches_head(
    database_url: str, tree: Tree, start_cli: Any, run_cli: Any, cli_env: dict[str, str],
) -> None:
    """SIGKILL inside revision 2 leaves the plugin exactly at revision 1; a rerun reaches head."""
    env = cli_env_for(cli_env, database_url, tree("fault_kill9"))
    process = start_cli("upgrade", env=env)
    sleeping_backend(database_url, process)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=DEADLINE)
    assert process.returncode == -signal.SIGKILL

    # Revision 2's CREATE TABLE is uncommitted (its orphaned backend may still be sleeping).
    assert version_of(database_url, "crash") == ["crash_0001"]
    assert tables_of(database_url, "crash") == {"first"}
    assert history_of(database_url, "crash") == ["crash_0001"]

    rerun = run_cli("upgrade", env={**env, "TEST_REVISION_SLEEP": "0"})
    assert rerun.returncode == 0, rerun.stderr
    assert_at_head(database_url, "crash", ["crash_0001", "crash_0002", "crash_0003"],
                   {"first", "second", "third"})


# -- a table lock held by another session ----------------------------------------------------


@pytest.fixture
def locked_at_first(database_url: str, tree: Tree, run_cli: Any,
                    cli_env: dict[str, str]) -> dict[str, str]:
    """The fault_table_lock tree upgraded to its first revision; returns the CLI environment."""
    env = cli_env_for(cli_env, database_url, tree("fault_table_lock"))
    first = run_cli("upgrade", "--plugin", "locked", "--to", "locked_0001", env=env)
    assert first.returncode == 0, first.stderr
    assert version_of(database_url, "locked") == ["locked_0001"]
    return env


def note_column_exists(url: str) -> bool:
    return bool(fetch(url, "SELECT 1 FROM information_schema.columns WHERE table_schema = "
                      "'locked' AND table_name = 'items' AND column_name = 'note'"))


def test_lock_timeout_retries_until_the_blocker_leaves(
    database_url: str, locked_at_first: dict[str, str], start_cli: Any, json_logs: Logs,
) -> None:
    """ALTER TABLE behind an open reader times out, is retried, and applies once it leaves."""
    with psycopg.connect(database_url, application_name="fault-test-reader") as reader:
        reader.execute("SELECT count(*) FROM locked.items")  # holds ACCESS SHARE until rollback
        reader_pid = reader.info.backend_pid
        process = start_cli("upgrade", "--lock-timeout", "200ms", "--retries", "3",
                            env=locked_at_first)
        # Two failed attempts: the first retry's blocker report is certainly logged by now.
        wait_until(lambda: len(history_of(database_url, "locked", "failed")) >= 2,
                   "two failed attempts", process)
        reader.rollback()
        _stdout, stderr = process.communicate(timeout=DEADLINE)

    assert process.returncode == 0, stderr
    retries = [e for e in json_logs(stderr) if e["event"] == "lock_timeout.retry"]
    assert len(retries) >= 2, stderr
    assert retries[0]["plugin"] == "locked" and retries[0]["revision"] == "locked_0002"
    assert [b["pid"] for b in retries[0]["blockers"]] == [reader_pid]
    assert retries[0]["blockers"][0]["application_name"] == "fault-test-reader"

    failed = fetch(database_url, "SELECT revision, error FROM migrator.history "
                   "WHERE plugin = 'locked' AND outcome = 'failed' ORDER BY id")
    assert len(failed) == len(retries)  # every failed attempt but the last was retried
    assert all(rev == "locked_0002" and "lock timeout" in error for rev, error in failed)
    assert history_of(database_url, "locked") == ["locked_0001", "locked_0002"]
    assert version_of(database_url, "locked") == ["locked_0002"]
    assert note_column_exists(database_url)


def test_lock_timeout_retries_exhausted_fail_naming_the_blocker(
    database_url: str, locked_at_first: dict[str, str], run_cli: Any, json_logs: Logs,
) -> None:
    """Out of lock-timeout retries, the run exits 1 naming plugin, revision and blocking pid."""
    with psycopg.connect(database_url, application_name="fault-test-locker") as locker:
        locker.execute("LOCK TABLE locked.items IN ACCESS EXCLUSIVE MODE")
        locker_pid = locker.info.backend_pid
        result = run_cli("upgrade", "--lock-timeout", "200ms", "--retries", "3",
                         env=locked_at_first)
        locker.rollback()

    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    [line] = error_lines(result.stderr)
    assert "'locked'" in line and "locked_0002" in line
    assert f"pid {locker_pid}" in line
    assert len([e for e in json_logs(result.stderr) if e["event"] == "lock_timeout.retry"]) == 3

    # Nothing half-applied: still at revision 1, no new column, four failed attempts recorded.
    assert version_of(database_url, "locked") == ["locked_0001"]
    assert not note_column_exists(database_url)
    assert history_of(database_url, "locked") == ["locked_0001"]
    assert history_of(database_url, "locked", "failed") == ["locked_0002"] * 4


# -- SIGTERM / SIGINT ------------------------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_finishes_the_current_revision_and_exits_6(
    signum: signal.Signals, database_url: str, tree: Tree, start_cli: Any, run_cli: Any,
    cli_env: dict[str, str], json_logs: Logs, tmp_path: Path,
) -> None:
    """A signal during a revision lets it commit, releases the lock, exits 6; a rerun resumes."""
    termination = tmp_path / "termination-log"
    env = cli_env_for(cli_env, database_url, tree("fault_sigterm"),
                      MIGRATOR_TERMINATION_LOG=str(termination))
    process = start_cli("upgrade", env=env)
    sleeping_backend(database_url, process)
    process.send_signal(signum)
    _stdout, stderr = process.communicate(timeout=DEADLINE)

    assert process.returncode == 6, stderr
    assert "Traceback" not in stderr
    [line] = error_lines(stderr)
    assert signum.name in line and "rerun" in line
    events = json_logs(stderr)
    assert [e["revision"] for e in events if e["event"] == "revision.applied"] == [
        "stoppable_0001", "stoppable_0002"]
    summary = json.loads(termination.read_text(encoding="utf-8"))
    assert summary["outcome"] == "interrupted"

    # The revision in flight committed; the next one never started.
    assert version_of(database_url, "stoppable") == ["stoppable_0002"]
    assert tables_of(database_url, "stoppable") == {"first", "second"}
    assert history_of(database_url, "stoppable") == ["stoppable_0001", "stoppable_0002"]

    # The plugin lock was released on the way out.
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute("SELECT pg_try_advisory_lock(%s)", (plugin_key("stoppable"),))
        assert row.fetchone() == (True,)

    rerun = run_cli("upgrade", env=env)
    assert rerun.returncode == 0, rerun.stderr
    assert_at_head(database_url, "stoppable",
                   ["stoppable_0001", "stoppable_0002", "stoppable_0003"],
                   {"first", "second", "third"})

    # The interrupted run's summary (what `kubectl describe pod` shows) says what it committed.
    [entry] = summary["plugins"]
    assert (entry["from"], entry["to"], entry["applied"], entry["outcome"]) == (
        None, "stoppable_0002", 2, "interrupted"), summary


# -- a terminated connection -----------------------------------------------------------------


def test_terminated_work_connection_fails_cleanly_and_a_rerun_reaches_head(
    database_url: str, tree: Tree, start_cli: Any, run_cli: Any, cli_env: dict[str, str],
    json_logs: Logs,
) -> None:
    """A work connection terminated mid-revision exits 4 (the database went away, the revision
    did nothing wrong) in one line at a boundary; a rerun heals."""
    env = cli_env_for(cli_env, database_url, tree("fault_terminate"))
    process = start_cli("upgrade", env=env)
    pid = sleeping_backend(database_url, process)
    assert fetch(database_url, "SELECT pg_terminate_backend(%s)", (pid,)) == [(True,)]
    _stdout, stderr = process.communicate(timeout=DEADLINE)

    assert process.returncode == 4, stderr
    assert "Traceback" not in stderr
    [line] = error_lines(stderr)
    assert "'severed'" in line and "severed_0002" in line
    assert "lost the database connection" in line and "was rolled back" in line
    assert version_of(database_url, "severed") == ["severed_0001"]
    assert tables_of(database_url, "severed") == {"first"}
    assert history_of(database_url, "severed") == ["severed_0001"]
    assert history_of(database_url, "severed", "failed") == ["severed_0002"]
    [finished] = [e for e in json_logs(stderr) if e["event"] == "run.finished"]

    rerun = run_cli("upgrade", env={**env, "TEST_REVISION_SLEEP": "0"})
    assert rerun.returncode == 0, rerun.stderr
    assert_at_head(database_url, "severed", ["severed_0001", "severed_0002", "severed_0003"],
                   {"first", "second", "third"})

    # The failed run's summary agrees: revision 1 committed before the connection was lost.
    [entry] = finished["plugins"]
    assert (entry["from"], entry["to"], entry["applied"], entry["outcome"]) == (
        None, "severed_0001", 1, "failed"), finished


# -- no password anywhere --------------------------------------------------------------------


def with_password(url: str) -> tuple[str, str]:
    """`url` with a password (trust auth ignores it), and that password; a real one is kept."""
    parts = urlsplit(url)
    if parts.password:
        return url, unquote(parts.password)
    user, _, host = parts.netloc.rpartition("@")
    netloc = f"{user or 'postgres'}:{quote(SECRET, safe='')}@{host}"
    return urlunsplit(parts._replace(netloc=netloc)), SECRET


def unreachable(url: str) -> str:
    """`url` with its password, pointed at a TCP port where nothing listens."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, f"{parts.netloc.rpartition('@')[0]}@127.0.0.1:1",
                       parts.path, "", ""))


@pytest.mark.parametrize("source", ["flag", "file"])
def test_password_appears_in_no_output_record_or_termination_message(
    source: str, database_url: str, tree: Tree, run_cli: Any, cli_env: dict[str, str],
    tmp_path: Path,
) -> None:
    """The password is in no stdout, stderr, JSON document, termination message or history
    row, whether the command succeeds, fails, retries, times out or finds something."""
    url, password = with_password(database_url)
    migrations = tree("fault_password")

    def run(name: str, target: str, *args: str, summary: bool = True
            ) -> subprocess.CompletedProcess[str]:
        termination = tmp_path / f"termination-{name}"
        env = {**cli_env, "MIGRATOR_MIGRATIONS_DIR": str(migrations),
               "MIGRATOR_TERMINATION_LOG": str(termination)}
        global_args: list[str] = []
        if source == "flag":
            global_args = ["--database-url", target]
        else:
            secret_file = tmp_path / f"url-{name}"
            secret_file.write_text(f"  {target}\n", encoding="utf-8")
            env["MIGRATOR_DATABASE_URL_FILE"] = str(secret_file)
        result: subprocess.CompletedProcess[str] = run_cli(*global_args, *args, env=env)
        for stream, text in (("stdout", result.stdout), ("stderr", result.stderr)):
            assert password not in text, f"{name}: password in {stream}:\n{text}"
        if summary:  # the commands that change the database write one
            assert termination.exists(), f"{name}: no termination message\n{result.stderr}"
            message = termination.read_text(encoding="utf-8")
            assert password not in message, f"{name}: password in the termination message"
        return result

    good = run("good", url, "upgrade", "--plugin", "good")
    assert good.returncode == 0, good.stderr

    broken = run("broken", url, "upgrade", "--plugin", "broken")
    assert broken.returncode == 1, broken.stderr
    assert "no_such_table" in error_lines(broken.stderr)[0]

    with psycopg.connect(database_url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (plugin_key("broken"),))
        waited = run("lock-wait", url, "upgrade", "--plugin", "broken", "--lock-wait", "1s")
    assert waited.returncode == 3, waited.stderr

    refused = run("unreachable", unreachable(url), "--connect-timeout", "1", "upgrade")
    assert refused.returncode == 4, refused.stderr
    assert "127.0.0.1:1" in error_lines(refused.stderr)[0]

    # Retrying on lock timeouts until the retries run out, then succeeding.
    (migrations / "good" / "versions" / "0002_add_note.py").write_text(
        'revision = "good_0002"\ndown_revision = "good_0001"\n\nfrom alembic import op\n\n\n'
        'def upgrade() -> None:\n    op.execute("ALTER TABLE accounts ADD COLUMN note text")\n')
    with psycopg.connect(database_url) as holder:
        holder.execute("LOCK TABLE good.accounts IN ACCESS SHARE MODE")
        retried = run("retried", url, "upgrade", "--plugin", "good", "--lock-timeout", "100ms",
                      "--retries", "2")
    assert retried.returncode == 1, retried.stderr
    assert "lock_timeout.retry" in retried.stderr
    assert run("retried-ok", url, "upgrade", "--plugin", "good").returncode == 0

    # JSON documents, and the commands that only read or wait.
    for name, args, code in (
        ("status", ("status", "--format", "json"), 0),
        ("check", ("check", "--format", "json"), 0),
        ("history", ("history", "--plugin", "broken", "--format", "json"), 0),
        ("current", ("current", "--format", "json"), 0),
        ("wait", ("wait", "--timeout", "1s"), 3),
    ):
        result = run(name, url, *args, summary=False)
        assert result.returncode == code, f"{name}: {result.stderr}"
        if "--format" in args:
            json.loads(result.stdout)

    rows = fetch(database_url, "SELECT h::text FROM migrator.history h ORDER BY id")
    assert len(rows) >= 2  # good applied, broken failed
    for (row,) in rows:
        assert password not in row
