"""The verbs besides a plain upgrade, against real PostgreSQL: downgrade, stamp, status,
plugins, history, current, heads and wait.

CLI subprocesses where the output or exit code is the contract; `migrator.commands` called
directly to set a database up or where only the effect on the database matters.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from helpers import error_lines, rows, settings_for, version_of

from migrator import commands, runs
from migrator.errors import FindingsReported
from migrator.revisions import normalised_checksum

REPO_ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_PLATFORM = REPO_ROOT / "plugin_migrations"

CORE = ("599d78f5272d", "582d2af23f76", "ddb4c3d7593d")
PANELS = ("a304542a37f6", "7c3aa4ddbdb2", "f6f7c7c2d5c1", "cde36d3bef11", "f793804564e9",
          "02adf31fccf3")
RESULTS = ("fe76fc4f7a85", "92060840afe5")
HEADS = {"core": CORE[-1], "analysis_results": RESULTS[-1], "panels": PANELS[-1]}
UNREACHABLE = "postgresql://postgres@127.0.0.1:1/postgres"


@pytest.fixture(autouse=True)
def _no_termination_log(monkeypatch: pytest.MonkeyPatch) -> None:
    # In-process runs must not write a termination message.
    monkeypatch.delenv("MIGRATOR_TERMINATION_LOG", raising=False)


def execute(url: str, statement: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(statement)


def tables_in(url: str, schema: str) -> set[str]:
    return {r[0] for r in rows(url, "SELECT table_name FROM information_schema.tables "
                                    "WHERE table_schema = %s", schema)}


def indexes_in(url: str, schema: str) -> set[str]:
    return {r[0] for r in rows(url, "SELECT indexname FROM pg_indexes WHERE schemaname = %s",
                               schema)}


def history(url: str, plugin: str) -> list[tuple[str, str, str, str | None]]:
    """(revision, direction, outcome, checksum) of the plugin's history rows, oldest first."""
    return [(r[0], r[1], r[2], r[3]) for r in rows(
        url, "SELECT revision, direction, outcome, checksum FROM migrator.history "
             "WHERE plugin = %s ORDER BY id", plugin)]


def checksum_of(tree: Path, plugin: str, revision: str) -> str:
    [path] = [p for p in (tree / plugin / "versions").glob("*.py")
              if f'revision: str = "{revision}"' in p.read_text()]
    return normalised_checksum(path.read_bytes())


def db_args(database_url: str, migrations_dir: Path) -> tuple[str, ...]:
    return ("--database-url", database_url, "--migrations-dir", str(migrations_dir))


def table_lines(stdout: str) -> dict[str, list[str]]:
    """Rows of a rendered table keyed by their first cell, split on whitespace."""
    return {cells[0]: cells for cells in (line.split() for line in stdout.splitlines()) if cells}


# -- downgrade -------------------------------------------------------------------------------


def test_downgrade_one_step_reverts_the_newest_revision(
    database_url: str, platform: Path, run_cli: Any, json_logs: Callable[..., Any]
) -> None:
    """`downgrade --plugin panels --to -1` reverts panels' newest revision only (a backfill:
    its checkpoint is forgotten, the earlier backfill's kept), recording a `down` history row
    with the file's checksum."""
    runs.upgrade(settings_for(database_url, platform))

    result = run_cli(*db_args(database_url, platform), "downgrade", "--plugin", "panels",
                     "--to", "-1")

    assert result.returncode == 0, result.stderr
    assert version_of(database_url, "panels") == [PANELS[-2]]
    assert version_of(database_url, "core") == [CORE[-1]]
    assert rows(database_url, "SELECT revision FROM migrator.backfill_progress "
                "WHERE plugin = 'panels'") == [(PANELS[-2],)]
    assert history(database_url, "panels")[-1] == (
        PANELS[-1], "down", "applied", checksum_of(platform, "panels", PANELS[-1]))
    [summary] = [e for e in json_logs(result.stderr) if e.get("event") == "run.finished"]
    [entry] = summary["plugins"]
    assert (entry["plugin"], entry["from"], entry["to"]) == ("panels", PANELS[-1], PANELS[-2])


def test_downgrade_to_a_revision_reverts_everything_after_it(
    database_url: str, platform: Path
) -> None:
    """`downgrade --to REV` reverts, newest first, every revision after REV and stops at it."""
    settings = settings_for(database_url, platform)
    runs.upgrade(settings)

    runs.downgrade(settings, "panels", PANELS[0])

    assert version_of(database_url, "panels") == [PANELS[0]]
    assert indexes_in(database_url, "panels") == {"pk_panels", "alembic_version_pkc"}
    assert [r[:3] for r in history(database_url, "panels")[len(PANELS):]] == [
        (rev, "down", "applied") for rev in reversed(PANELS[1:])]


def test_downgrade_to_base_empties_the_version_table_and_drops_the_plugins_tables(
    database_url: str, platform: Path
) -> None:
    """`downgrade --to base` reverts every revision: the version table stays, empty, and the
    plugin's tables are gone while other plugins are untouched."""
    settings = settings_for(database_url, platform)
    runs.upgrade(settings)

    runs.downgrade(settings, "panels", "base")

    assert version_of(database_url, "panels") == []
    assert tables_in(database_url, "panels") == {"alembic_version"}
    assert version_of(database_url, "core") == [CORE[-1]]
    assert [r[:3] for r in history(database_url, "panels")[len(PANELS):]] == [
        (rev, "down", "applied") for rev in reversed(PANELS)]


def test_downgrade_to_an_unreachable_destination_is_a_usage_error_that_changes_nothing(
    database_url: str, platform: Path, run_cli: Any
) -> None:
    """`downgrade --to` more steps back than were applied, or to a revision ahead of the
    current one, exits 2 naming the destination and reverts nothing."""
    settings = settings_for(database_url, platform)
    runs.upgrade(settings, ["panels"], to=PANELS[1])

    too_far = run_cli(*db_args(database_url, platform), "downgrade", "--plugin", "panels",
                      "--to", "-3")
    ahead = run_cli(*db_args(database_url, platform), "downgrade", "--plugin", "panels",
                    "--to", PANELS[2])

    assert version_of(database_url, "panels") == [PANELS[1]]
    assert [r[1] for r in history(database_url, "panels")] == ["up", "up"]
    assert (too_far.returncode, ahead.returncode) == (2, 2), too_far.stderr + ahead.stderr
    [too_far_line] = error_lines(too_far.stderr)
    [ahead_line] = error_lines(ahead.stderr)
    assert "-3" in too_far_line
    assert PANELS[2] in ahead_line


# -- stamp -----------------------------------------------------------------------------------


def test_stamp_head_on_an_empty_database_records_it_and_runs_nothing(
    database_url: str, platform: Path, run_cli: Any
) -> None:
    """`stamp --plugin core head` on an empty database writes head into core's version table
    and a `stamp` history row, and creates none of core's tables."""
    result = run_cli(*db_args(database_url, platform), "stamp", "--plugin", "core", "head")

    assert result.returncode == 0, result.stderr
    assert version_of(database_url, "core") == [CORE[-1]]
    assert tables_in(database_url, "core") == {"alembic_version"}
    assert history(database_url, "core") == [
        (CORE[-1], "stamp", "applied", checksum_of(platform, "core", CORE[-1]))]


def test_stamp_a_revision_or_base_moves_only_the_version_table(
    database_url: str, platform: Path
) -> None:
    """Stamping an earlier revision, then base, changes only the version table (emptied by
    base) and records each as a `stamp` row; the plugin's tables stay as they were."""
    settings = settings_for(database_url, platform)
    runs.upgrade(settings, ["core"])

    runs.stamp(settings, "core", CORE[0])
    assert version_of(database_url, "core") == [CORE[0]]
    runs.stamp(settings, "core", "base")

    assert version_of(database_url, "core") == []
    assert tables_in(database_url, "core") == {"accounts", "experiments", "alembic_version"}
    assert [r[:3] for r in history(database_url, "core")[3:]] == [
        (CORE[0], "stamp", "applied"), ("base", "stamp", "applied")]


# -- status ------------------------------------------------------------------------------------


def test_status_table_shows_current_head_state_and_pending(
    database_url: str, platform: Path, run_cli: Any
) -> None:
    """`status` prints a table with each plugin's schema, current revision, head, state and
    pending revisions."""
    runs.upgrade(settings_for(database_url, platform), ["core"])

    result = run_cli(*db_args(database_url, platform), "status")

    assert result.returncode == 0, result.stderr
    lines = table_lines(result.stdout)
    assert lines["plugin"] == ["plugin", "schema", "current", "head", "state", "pending"]
    assert lines["core"] == ["core", "core", CORE[-1], CORE[-1], "up_to_date"]
    assert lines["panels"] == ["panels", "panels", PANELS[-1], "pending", *PANELS]
    assert lines["analysis_results"] == [
        "analysis_results", "analysis_results", RESULTS[-1], "pending", *RESULTS]


def test_status_json_reports_states_and_check_exits_5_on_pending_or_unknown(
    database_url: str, platform: Path, run_cli: Any
) -> None:
    """`status --format json --check` prints exactly the documented document (up_to_date,
    pending, unknown_revision) and exits 5."""
    runs.upgrade(settings_for(database_url, platform), ["analysis_results"])
    execute(database_url,
            "UPDATE analysis_results.alembic_version SET version_num = 'feedfacecafe'")

    result = run_cli(*db_args(database_url, platform), "status", "--format", "json", "--check")

    assert result.returncode == 5, result.stderr
    assert json.loads(result.stdout) == {"plugins": [
        {"name": "core", "schema": "core", "current": CORE[-1], "head": CORE[-1],
         "heads": [CORE[-1]], "pending": [], "state": "up_to_date"},
        {"name": "analysis_results", "schema": "analysis_results", "current": "feedfacecafe",
         "head": RESULTS[-1], "heads": [RESULTS[-1]], "pending": [],
         "state": "unknown_revision"},
        {"name": "panels", "schema": "panels", "current": None, "head": PANELS[-1],
         "heads": [PANELS[-1]], "pending": list(PANELS), "state": "pending"},
    ]}
    [line] = error_lines(result.stderr)
    assert "panels" in line and "analysis_results" in line


def test_status_check_counts_pending_alone_and_unknown_alone(
    database_url: str, platform: Path
) -> None:
    """`status --check` finds something when one plugin is merely pending, and when one is
    merely at an unknown revision."""
    settings = settings_for(database_url, platform)
    runs.upgrade(settings, ["core"], to=CORE[1])
    with pytest.raises(FindingsReported, match="core"):
        commands.check_status(commands.status(settings, ["core"]))

    runs.upgrade(settings, ["core"])
    execute(database_url, "UPDATE core.alembic_version SET version_num = 'feedfacecafe'")
    report = commands.status(settings, ["core"])
    assert [p.state for p in report.plan.plugins] == ["unknown_revision"]
    with pytest.raises(FindingsReported, match="core"):
        commands.check_status(report)


def test_status_check_exits_0_when_everything_is_at_head(
    database_url: str, platform: Path, run_cli: Any
) -> None:
    """`status --check` exits 0 when every plugin is at head."""
    runs.upgrade(settings_for(database_url, platform))

    result = run_cli(*db_args(database_url, platform), "status", "--check")

    assert result.returncode == 0, result.stderr
    assert {cells[0]: cells[4] for name, cells in table_lines(result.stdout).items()
            if name in HEADS} == dict.fromkeys(HEADS, "up_to_date")


def test_status_reports_an_uninstalled_plugin_as_orphaned_and_check_ignores_it(
    database_url: str, tree: Callable[[str], Path], run_cli: Any
) -> None:
    """A plugin migrated earlier whose tree is gone shows as `orphaned` with its revision, and
    `status --check` does not count it."""
    trees = tree("run_orphan")
    runs.upgrade(settings_for(database_url, trees))
    shutil.rmtree(trees / "gone")

    shown = run_cli(*db_args(database_url, trees), "status", "--format", "json")
    checked = run_cli(*db_args(database_url, trees), "status", "--check")

    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout) == {"plugins": [
        {"name": "keep", "schema": "keep", "current": "0e0e00000001", "head": "0e0e00000001",
         "heads": ["0e0e00000001"], "pending": [], "state": "up_to_date"},
        {"name": "gone", "schema": "gone", "current": "0e0e00000002", "head": None, "heads": [],
         "pending": [], "state": "orphaned"},
    ]}
    assert checked.returncode == 0, checked.stderr
    assert table_lines(checked.stdout)["gone"][-1] == "orphaned"
    assert tables_in(database_url, "gone") == {"gone_things", "alembic_version"}


def test_status_without_a_database_exits_2_saying_how_to_configure_one(
    platform: Path, run_cli: Any
) -> None:
    """A command that needs a database, run with none configured, exits 2 with a line naming
    --database-url and MIGRATOR_DATABASE_URL."""
    result = run_cli("--migrations-dir", platform, "status")

    assert result.returncode == 2, result.stderr
    [line] = error_lines(result.stderr)
    assert "--database-url" in line and "MIGRATOR_DATABASE_URL" in line


# -- reading ------------------------------------------------------------------------------------


def test_plugins_json_lists_each_plugin_with_schema_source_dependencies_and_head(
    platform: Path, run_cli: Any
) -> None:
    """`plugins --format json` needs no database and prints the documented document, in
    dependency order."""
    result = run_cli("--migrations-dir", platform, "plugins", "--format", "json")

    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert list(document) == ["plugins"]
    entries = document["plugins"]
    assert all(list(e) == ["name", "schema", "source", "depends_on", "head", "heads",
                           "extensions", "version_table"] for e in entries)
    assert {e["name"]: (e["schema"], e["depends_on"], e["head"]) for e in entries} == {
        "core": ("core", [], CORE[-1]), "panels": ("panels", ["core"], PANELS[-1]),
        "analysis_results": ("analysis_results", ["core"], RESULTS[-1])}
    assert all(isinstance(e["source"], str) and e["source"] for e in entries)
    assert entries[0]["name"] == "core"


def test_history_shows_the_trees_revisions_and_the_recorded_attempts(
    database_url: str, platform: Path, run_cli: Any
) -> None:
    """`history --plugin panels` lists the tree's revisions newest first and the plugin's
    rows from migrator.history (ups and the later down)."""
    settings = settings_for(database_url, platform)
    runs.upgrade(settings, ["panels"])
    runs.downgrade(settings, "panels", "-1")

    result = run_cli(*db_args(database_url, platform), "history", "--plugin", "panels")

    assert result.returncode == 0, result.stderr
    out = result.stdout
    positions = [out.index(f"{rev}  ") for rev in reversed(PANELS)]
    assert positions == sorted(positions)  # newest first
    for name in ("0001_create_panels.py", "0002_add_panel_indexes.py",
                 "0003_add_panel_notes.py", "0006_canonical_drug_names.py", "migrator.history"):
        assert name in out
    records = [line.split() for line in out.split("migrator.history", 1)[1].splitlines()]
    attempts = [(cells[2], cells[3], cells[4]) for cells in records if len(cells) > 4
                and cells[2] in PANELS]
    assert attempts == [(rev, "up", "applied") for rev in PANELS] + [
        (PANELS[-1], "down", "applied")]
    assert "core" not in {cells[2] for cells in records if len(cells) > 2}


def test_current_shows_each_plugins_revision_in_the_database(
    database_url: str, platform: Path, run_cli: Any
) -> None:
    """`current` shows each plugin's revision in the database, blank where none is applied."""
    runs.upgrade(settings_for(database_url, platform), ["core"], to=CORE[1])

    result = run_cli(*db_args(database_url, platform), "current")

    assert result.returncode == 0, result.stderr
    lines = table_lines(result.stdout)
    assert lines["core"] == ["core", "core", CORE[1]]
    assert lines["panels"] == ["panels", "panels"]
    assert lines["analysis_results"] == ["analysis_results", "analysis_results"]


def test_heads_needs_no_database(platform: Path, run_cli: Any) -> None:
    """`heads` prints every tree's head with no database configured."""
    result = run_cli("--migrations-dir", platform, "heads")

    assert result.returncode == 0, result.stderr
    lines = table_lines(result.stdout)
    assert {name: lines[name] for name in HEADS} == {
        name: [name, head] for name, head in HEADS.items()}


# -- wait -----------------------------------------------------------------------------------------


def test_wait_exits_0_when_every_plugin_is_at_head(
    database_url: str, platform: Path, run_cli: Any
) -> None:
    """`wait` returns 0 at once when the database is at head."""
    runs.upgrade(settings_for(database_url, platform))

    result = run_cli(*db_args(database_url, platform), "wait", "--timeout", "5s")

    assert result.returncode == 0, result.stderr


def test_wait_times_out_with_exit_3_while_revisions_are_pending(
    database_url: str, platform: Path, run_cli: Any
) -> None:
    """`wait --timeout 1s` exits 3 after about a second when revisions are pending."""
    runs.upgrade(settings_for(database_url, platform), ["core"])

    started = time.monotonic()
    result = run_cli(*db_args(database_url, platform), "wait", "--timeout", "1s", timeout=30)

    assert result.returncode == 3, result.stderr
    assert time.monotonic() - started < 10
    [line] = error_lines(result.stderr)
    assert "pending" in line


def test_wait_treats_an_unreachable_database_as_not_yet(
    platform: Path, run_cli: Any
) -> None:
    """`wait` against a closed port keeps waiting and exits 3 on timeout, not 4."""
    result = run_cli("--database-url", UNREACHABLE, "--migrations-dir", platform,
                     "wait", "--timeout", "1s", timeout=30)

    assert result.returncode == 3, result.stderr
    [line] = error_lines(result.stderr)
    assert "not reachable" in line
