"""`migrator upgrade` against real PostgreSQL: the example platform, failures, the fast path.

Where the command line is the contract (exit codes, events, stderr, the termination message)
the tests run the CLI in a subprocess; elsewhere they call `migrator.commands` directly.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from helpers import error_lines, rows, settings_for, version_of

import migrator
from migrator import runs
from migrator.errors import UsageError
from migrator.revisions import normalised_checksum

REPO_ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_PLATFORM = REPO_ROOT / "plugin_migrations"

CORE = ("599d78f5272d", "582d2af23f76", "ddb4c3d7593d")
PANELS = ("a304542a37f6", "7c3aa4ddbdb2", "f6f7c7c2d5c1", "cde36d3bef11", "f793804564e9",
          "02adf31fccf3")
RESULTS = ("fe76fc4f7a85", "92060840afe5")
HEADS = {"core": CORE[-1], "panels": PANELS[-1], "analysis_results": RESULTS[-1]}
TABLES = {"core": {"accounts", "experiments"}, "panels": {"panels"},
          "analysis_results": {"analysis_results"}}

SHOP = ("5a0e1f3c2b01", "5a0e1f3c2b02", "5a0e1f3c2b03")
UNREACHABLE = "postgresql://postgres@127.0.0.1:1/postgres"

# Written as sitecustomize.py on PYTHONPATH: records every module imported and every code
# object executed from a file under $IMPORT_PROBE_TREES (Alembic loads revisions with
# exec_module, which leaves no trace in sys.modules), then dumps both to $IMPORT_PROBE_OUT.
IMPORT_PROBE = '''
import atexit, os, sys

_executed = []


def _audit(event, args):
    if event == "exec":
        filename = getattr(args[0], "co_filename", "")
        if filename.startswith(os.environ["IMPORT_PROBE_TREES"] + os.sep):
            _executed.append(filename)


def _dump():
    import json

    with open(os.environ["IMPORT_PROBE_OUT"], "w") as out:
        json.dump({"modules": sorted(sys.modules), "executed": _executed}, out)


sys.addaudithook(_audit)
atexit.register(_dump)
_os_exit = os._exit


def _exit(code):  # migrator leaves with os._exit (no teardown, so no atexit): dump first
    _dump()
    _os_exit(code)


os._exit = _exit
'''


@pytest.fixture(autouse=True)
def _no_termination_log(monkeypatch: pytest.MonkeyPatch) -> None:
    # In-process runs must not write a termination message anywhere but where a test says.
    monkeypatch.delenv("MIGRATOR_TERMINATION_LOG", raising=False)


def tables_in(url: str, schema: str) -> set[str]:
    return {r[0] for r in rows(url, "SELECT table_name FROM information_schema.tables "
                                    "WHERE table_schema = %s", schema)}


def schemas(url: str) -> set[str]:
    return {r[0] for r in rows(url, "SELECT nspname FROM pg_namespace")}


def history(url: str, plugin: str | None = None) -> list[dict[str, Any]]:
    from psycopg.rows import dict_row

    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
        found = conn.execute("SELECT to_regclass('migrator.history') AS t").fetchone()
        if found is None or found["t"] is None:
            return []
        return conn.execute(
            "SELECT * FROM migrator.history WHERE %s::text IS NULL OR plugin = %s ORDER BY id",
            (plugin, plugin)).fetchall()


def alembic_heads(url: str, schema: str) -> tuple[str, ...]:
    """The version table as plain Alembic reads it."""
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    engine = create_engine("postgresql+psycopg://", creator=lambda: psycopg.connect(url),
                           poolclass=NullPool)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"version_table_schema": schema})
            return tuple(context.get_current_heads())
    finally:
        engine.dispose()


def sha256(path: Path) -> str:
    """The checksum migrator records: sha256 of the file's code (`normalised_checksum`)."""
    return normalised_checksum(path.read_bytes())


def events_named(events: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [e for e in events if e.get("event") == name]


def finished(events: list[dict[str, Any]]) -> dict[str, Any]:
    [event] = events_named(events, "run.finished")
    return event


# -- the example platform -------------------------------------------------------------------


def test_upgrade_from_empty_migrates_every_plugin_into_its_own_schema(
    database_url: str, platform: Path, run_cli: Any, json_logs: Callable[..., Any]
) -> None:
    """Upgrading an empty database puts every plugin at head in its own schema, with one
    complete `up` history row and one `revision.applied` event per revision, in dependency
    order, and a `run.finished` summary per plugin."""
    result = run_cli("--database-url", database_url, "--migrations-dir", platform, "upgrade")
    assert result.returncode == 0, result.stderr

    assert {"core", "panels", "analysis_results", "migrator"} <= schemas(database_url)
    for schema, head in HEADS.items():
        assert version_of(database_url, schema) == [head]
        assert alembic_heads(database_url, schema) == (head,)
        assert tables_in(database_url, schema) == TABLES[schema] | {"alembic_version"}
    assert tables_in(database_url, "public") == set()

    records = history(database_url)
    expected = {"core": CORE, "panels": PANELS, "analysis_results": RESULTS}
    assert sorted((r["plugin"], r["revision"]) for r in records) == sorted(
        (plugin, rev) for plugin, revs in expected.items() for rev in revs)
    for record in records:
        assert record["direction"] == "up"
        assert record["outcome"] == "applied"
        assert record["error"] is None
        assert record["schema_name"] == record["plugin"]
        assert record["started_at"] <= record["finished_at"]
        assert isinstance(record["duration_ms"], int) and record["duration_ms"] >= 0
        assert record["applied_by"]
        assert record["migrator_version"] == migrator.__version__
        revision_file = next(p for p in platform.glob(f"{record['plugin']}/versions/*.py")
                             if f'revision: str = "{record["revision"]}"' in p.read_text())
        assert record["checksum"] == sha256(revision_file)
    order = [(r["plugin"], r["revision"]) for r in records]
    for plugin, revs in expected.items():
        assert [rev for p, rev in order if p == plugin] == list(revs)  # oldest first
    last_core = max(i for i, (p, _) in enumerate(order) if p == "core")
    assert all(i > last_core for i, (p, _) in enumerate(order) if p != "core")

    events = json_logs(result.stderr)
    applied = events_named(events, "revision.applied")
    assert [(e["plugin"], e["revision"]) for e in applied] == order
    assert all(isinstance(e["duration_ms"], int) for e in applied)
    summary = finished(events)
    assert summary["outcome"] == "success"
    by_plugin = {p["plugin"]: p for p in summary["plugins"]}
    assert set(by_plugin) == set(HEADS)
    for plugin, revs in expected.items():
        entry = by_plugin[plugin]
        assert entry["from"] is None
        assert entry["to"] == revs[-1]
        assert entry["applied"] == len(revs)
        assert isinstance(entry["duration_ms"], int) and entry["duration_ms"] >= 0
        assert entry["outcome"] == "applied"


def test_second_upgrade_applies_nothing_and_writes_no_history(
    database_url: str, platform: Path, run_cli: Any, json_logs: Callable[..., Any]
) -> None:
    """A second upgrade of a database at head applies nothing, records nothing and reports
    every plugin up to date."""
    runs.upgrade(settings_for(database_url, platform))
    before = history(database_url)

    result = run_cli("--database-url", database_url, "--migrations-dir", platform, "upgrade")

    assert result.returncode == 0, result.stderr
    assert history(database_url) == before
    events = json_logs(result.stderr)
    assert events_named(events, "revision.applied") == []
    summary = finished(events)
    assert summary["outcome"] == "success"
    assert {p["plugin"]: (p["from"], p["to"], p["applied"], p["outcome"])
            for p in summary["plugins"]} == {
        plugin: (head, head, 0, "up_to_date") for plugin, head in HEADS.items()}


def test_noop_upgrade_imports_no_alembic_sqlalchemy_or_revision_and_takes_no_lock(
    database_url: str, platform: Path, run_cli: Any, cli_env: dict[str, str],
    tmp_path: Path, json_logs: Callable[..., Any]
) -> None:
    """The fast path: an upgrade with nothing pending neither imports alembic, SQLAlchemy or
    any revision module nor takes an advisory lock (the first, pending run shows the probe
    sees all three)."""
    probe_dir = tmp_path / "probe"
    probe_dir.mkdir()
    (probe_dir / "sitecustomize.py").write_text(IMPORT_PROBE)
    env = dict(cli_env, PYTHONPATH=os.pathsep.join([str(probe_dir), cli_env["PYTHONPATH"]]),
               IMPORT_PROBE_TREES=str(platform))
    args = ("--database-url", database_url, "--migrations-dir", platform, "upgrade")

    def run(out: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        result = run_cli(*args, env=dict(env, IMPORT_PROBE_OUT=str(out)))
        assert result.returncode == 0, result.stderr
        return json.loads(out.read_text()), json_logs(result.stderr)

    first, first_events = run(tmp_path / "first.json")
    assert "alembic" in first["modules"] and "sqlalchemy" in first["modules"]
    assert {Path(f).name for f in first["executed"]} == {
        p.name for p in platform.glob("*/versions/*.py")}
    assert events_named(first_events, "lock.acquired")

    second, second_events = run(tmp_path / "second.json")
    heavy = [m for m in second["modules"] if m.split(".")[0] in ("alembic", "sqlalchemy")]
    assert heavy == []
    assert second["executed"] == []
    revision_modules = {p.stem for p in platform.glob("*/versions/*.py")}
    assert revision_modules.isdisjoint(m.rsplit(".", 1)[-1] for m in second["modules"])
    assert events_named(second_events, "lock.acquired") == []
    assert events_named(second_events, "revision.applied") == []


def test_upgrade_of_one_plugin_migrates_its_dependencies_first_and_nothing_else(
    database_url: str, platform: Path, run_cli: Any, json_logs: Callable[..., Any]
) -> None:
    """`upgrade --plugin panels` migrates core first, then panels, and leaves
    analysis_results alone."""
    result = run_cli("--database-url", database_url, "--migrations-dir", platform,
                     "upgrade", "--plugin", "panels")

    assert result.returncode == 0, result.stderr
    assert version_of(database_url, "core") == [CORE[-1]]
    assert version_of(database_url, "panels") == [PANELS[-1]]
    assert "analysis_results" not in schemas(database_url)
    assert [r["plugin"] for r in history(database_url)] == ["core"] * 3 + ["panels"] * len(PANELS)
    summary = finished(json_logs(result.stderr))
    assert [p["plugin"] for p in summary["plugins"]] == ["core", "panels"]


def test_upgrade_to_a_revision_stops_there(database_url: str, platform: Path,
                                           run_cli: Any) -> None:
    """`upgrade --plugin core --to REV` applies core's revisions up to REV and no further."""
    result = run_cli("--database-url", database_url, "--migrations-dir", platform,
                     "upgrade", "--plugin", "core", "--to", CORE[1])

    assert result.returncode == 0, result.stderr
    assert version_of(database_url, "core") == [CORE[1]]
    assert tables_in(database_url, "core") == {"accounts", "experiments", "alembic_version"}
    columns = {r[0] for r in rows(database_url, "SELECT column_name FROM "
                                  "information_schema.columns WHERE table_schema = 'core' "
                                  "AND table_name = 'experiments'")}
    assert "status" not in columns  # the third revision did not run
    assert [r["revision"] for r in history(database_url)] == list(CORE[:2])
    assert "panels" not in schemas(database_url)


def test_upgrade_to_an_unknown_revision_exits_2_and_changes_nothing(
    database_url: str, platform: Path, run_cli: Any
) -> None:
    """`upgrade --to` naming a revision that is not in the plugin's tree is a usage error
    (exit 2) that names the revision and creates nothing."""
    result = run_cli("--database-url", database_url, "--migrations-dir", platform,
                     "upgrade", "--plugin", "core", "--to", "0badc0ffee00")

    assert result.returncode == 2, result.stderr
    [line] = error_lines(result.stderr)
    assert "0badc0ffee00" in line and "core" in line
    assert "core" not in schemas(database_url)
    assert "migrator" not in schemas(database_url)


def test_upgrade_to_without_exactly_one_plugin_is_a_usage_error(
    database_url: str, platform: Path
) -> None:
    """`upgrade --to` with no --plugin, or with two, is refused before anything is touched."""
    settings = settings_for(database_url, platform)

    for names in ([], ["core", "panels"]):
        with pytest.raises(UsageError, match="exactly one --plugin"):
            runs.upgrade(settings, names, to=CORE[1])

    assert "core" not in schemas(database_url)


# -- failures ---------------------------------------------------------------------------------


def test_failed_revision_rolls_back_records_failure_and_rerun_after_fix_reaches_head(
    database_url: str, tree: Callable[[str], Path], run_cli: Any
) -> None:
    """A revision that fails in the database exits 1 with one line naming plugin, revision and
    the database's message, leaves the plugin at the previous revision with nothing of the
    failed one, records a `failed` history row, and a rerun after fixing the file reaches
    head."""
    trees = tree("run_failing")
    broken = trees / "shop" / "versions" / "0002_create_leftovers_then_fail.py"
    args = ("--database-url", database_url, "--migrations-dir", trees, "upgrade")

    result = run_cli(*args)

    assert result.returncode == 1, result.stderr
    [line] = error_lines(result.stderr)
    assert "shop" in line
    assert SHOP[1] in line
    assert 'relation "no_such_table" does not exist' in line
    assert "Traceback" not in result.stderr
    assert version_of(database_url, "shop") == [SHOP[0]]
    assert tables_in(database_url, "shop") == {"items", "alembic_version"}
    records = history(database_url, "shop")
    assert [(r["revision"], r["direction"], r["outcome"]) for r in records] == [
        (SHOP[0], "up", "applied"), (SHOP[1], "up", "failed")]
    failed = records[1]
    assert 'relation "no_such_table" does not exist' in failed["error"]
    assert failed["checksum"] == sha256(broken)
    assert failed["finished_at"] >= failed["started_at"]

    broken.write_text(broken.read_text().replace("no_such_table", "leftovers"))
    rerun = run_cli(*args)

    assert rerun.returncode == 0, rerun.stderr
    assert version_of(database_url, "shop") == [SHOP[2]]
    assert rows(database_url, "SELECT id FROM shop.leftovers") == [(1,)]
    assert [(r["revision"], r["outcome"]) for r in history(database_url, "shop")][2:] == [
        (SHOP[1], "applied"), (SHOP[2], "applied")]


def test_termination_message_holds_the_run_summary_on_success_and_failure(
    database_url: str, platform: Path, tree: Callable[[str], Path], run_cli: Any,
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    """With MIGRATOR_TERMINATION_LOG set, upgrade writes its one-line JSON summary there; when
    a revision fails, with outcome `failed` and the plugin's true from/to/applied."""
    message = tmp_path / "termination-log"
    env = dict(cli_env, MIGRATOR_TERMINATION_LOG=str(message))

    ok = run_cli("--database-url", database_url, "--migrations-dir", platform, "upgrade",
                 env=env)

    assert ok.returncode == 0, ok.stderr
    text = message.read_text()
    assert len(text.strip().splitlines()) == 1
    summary = json.loads(text)
    assert summary["outcome"] == "success"
    assert {p["plugin"]: (p["from"], p["to"], p["applied"], p["outcome"])
            for p in summary["plugins"]} == {
        "core": (None, CORE[-1], 3, "applied"),
        "panels": (None, PANELS[-1], len(PANELS), "applied"),
        "analysis_results": (None, RESULTS[-1], 2, "applied")}

    message.unlink()
    failing = run_cli("--database-url", database_url, "--migrations-dir", tree("run_failing"),
                      "upgrade", env=env)

    assert failing.returncode == 1, failing.stderr
    text = message.read_text()
    assert len(text.strip().splitlines()) == 1
    summary = json.loads(text)
    assert summary["outcome"] == "failed"
    assert "no_such_table" in summary["error"]
    [shop] = summary["plugins"]
    assert shop["plugin"] == "shop"
    assert shop["outcome"] == "failed"
    # The first revision committed before the second failed: the summary says where the
    # plugin stopped and how much was applied, not where it started.
    assert (shop["from"], shop["to"], shop["applied"]) == (None, SHOP[0], 1)


# -- what a revision sees -------------------------------------------------------------------------


def test_concurrent_index_in_autocommit_block_is_built_valid_and_stamped(
    database_url: str, tree: Callable[[str], Path]
) -> None:
    """A revision that builds an index with CREATE INDEX CONCURRENTLY inside Alembic's
    autocommit_block succeeds, leaves a valid index and is stamped and recorded."""
    trees = tree("run_concurrent_index")

    summary = runs.upgrade(settings_for(database_url, trees))

    assert summary.outcome == "success"
    assert rows(database_url, "SELECT i.indisvalid, i.indisready FROM pg_index i "
                              "JOIN pg_class c ON c.oid = i.indexrelid "
                              "JOIN pg_namespace n ON n.oid = c.relnamespace "
                              "WHERE n.nspname = 'catalog' AND c.relname = 'ix_products_name'"
                ) == [(True, True)]
    assert version_of(database_url, "catalog") == ["c0ffee000002"]
    assert [(r["revision"], r["direction"], r["outcome"])
            for r in history(database_url, "catalog")] == [
        ("c0ffee000001", "up", "applied"), ("c0ffee000002", "up", "applied")]


def test_search_path_during_a_revision_is_the_plugin_schema_then_public(
    database_url: str, tree: Callable[[str], Path]
) -> None:
    """While a plugin's revision runs, search_path is the plugin's schema, then public."""
    runs.upgrade(settings_for(database_url, tree("run_search_path")))

    assert rows(database_url, "SELECT schemas FROM probe.seen") == [(["probe", "public"],)]
    assert tables_in(database_url, "public") == set()


# -- connecting ---------------------------------------------------------------------------------


def test_unreachable_database_exits_4_after_connect_timeout_with_retry_events(
    platform: Path, run_cli: Any, json_logs: Callable[..., Any]
) -> None:
    """With --connect-timeout 2 against a closed port, upgrade retries (logging
    `db.connect_retry`) for about two seconds, then exits 4."""
    started = time.monotonic()
    result = run_cli("--database-url", UNREACHABLE, "--connect-timeout", "2",
                     "--migrations-dir", platform, "upgrade", timeout=30)
    elapsed = time.monotonic() - started

    assert result.returncode == 4, result.stderr
    assert 2 <= elapsed <= 6
    assert events_named(json_logs(result.stderr), "db.connect_retry")
    [line] = error_lines(result.stderr)
    assert "unreachable" in line


def test_embedded_upgrade_starts_a_local_server_and_reuses_it(
    run_cli: Any, json_logs: Callable[..., Any]
) -> None:
    """`migrator --embedded upgrade` creates .migrator/pgdata in the working directory and
    migrates the example platform there; a second run reuses that server and applies
    nothing."""
    from migrator.embedded import stop_server

    # Not under pytest's tmp_path: as root the server runs as another user, and a concurrent
    # pytest session resets /tmp/pytest-of-<user> to 0700, locking that user out.
    workdir = Path(tempfile.mkdtemp(prefix="migrator-run-embedded-"))
    pgdata = workdir / ".migrator" / "pgdata"
    args = ("--embedded", "--migrations-dir", EXAMPLE_PLATFORM, "upgrade")
    try:
        first = run_cli(*args, cwd=workdir, timeout=180)
        assert first.returncode == 0, first.stderr
        assert (pgdata / "PG_VERSION").is_file()
        postmaster = (pgdata / "postmaster.pid").read_text().split()[0]
        first_summary = finished(json_logs(first.stderr))
        assert {p["plugin"]: (p["to"], p["outcome"]) for p in first_summary["plugins"]} == {
            plugin: (head, "applied") for plugin, head in HEADS.items()}

        second = run_cli(*args, cwd=workdir, timeout=180)
        assert second.returncode == 0, second.stderr
        assert (pgdata / "postmaster.pid").read_text().split()[0] == postmaster
        second_summary = finished(json_logs(second.stderr))
        assert {p["plugin"]: (p["to"], p["outcome"]) for p in second_summary["plugins"]} == {
            plugin: (head, "up_to_date") for plugin, head in HEADS.items()}
        stop_server(pgdata)
        assert not (pgdata / "postmaster.pid").exists()
    finally:
        stop_server(pgdata)
        shutil.rmtree(workdir, ignore_errors=True)

