"""Offline rendering of real-world revision shapes: backfills as batch loops psql runs to the
end, the Alembic `Config` revisions read, revisions that cannot be shown offline, `%` kept."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import scratch_database
from helpers import fetch, settings_for, wait_until
from treebuilder import Rev, write_plugin

from migrator import previews, runs
from migrator.config import Settings
from migrator.review_format import format_text
from migrator.sql_output import UNRENDERABLE
from migrator.sql_script import ScriptHeader, format_script

UNRENDERABLE_WHY = {
    "un000002": "it reads a query's result (.fetchall()), which needs a database",
    "un000003": "it reads a query's result (.scalar()), which needs a database",
    "un000004": "it iterates over a query's rows, which needs a database",
    "un000005": "it introspects the database (sqlalchemy.inspect), which needs a database",
    "un000006": "it commits the transaction itself (op.get_bind().commit())",
    "un000007": "it calls sys.exit(0)",
    "un000008": "its backfill 'things' uses transform=upgrade.<locals>.<lambda>, a Python "
                "function with no SQL form",
}


@pytest.fixture
def other_database(server_url: str) -> Iterator[str]:
    """A second fresh database, for comparing an online run with an applied script."""
    with scratch_database(server_url) as url:
        yield url


def script_of(trees: Path, *names: str) -> str:
    rendered = previews.upgrade_sql(Settings(migrations_dir=trees), names)
    return format_script(rendered, ScriptHeader("migrator upgrade --sql"))


def psql(url: str, script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url, "-f", "-"],
                          input=script, capture_output=True, text=True, check=False)


def test_sql_backfill_updates_every_row_like_an_online_run(
    database_url: str, other_database: str, tree: Any
) -> None:
    """A 40,000-row backfill (batch_size 3000, a `where` and a parameter holding a quote and
    a `%`) rendered by --sql and applied by psql updates every row batch by batch before its
    stamp, equal to an online run's result; a second `upgrade` is then a no-op."""
    trees = tree("offline_backfill")
    script = script_of(trees)
    assert "BEGIN;\nCOMMIT;" not in script

    result = psql(database_url, script)
    assert result.returncode == 0, result.stderr
    runs.upgrade(settings_for(other_database, trees))

    query = "SELECT id, drug_name FROM catalog.events ORDER BY id"
    offline, online = fetch(database_url, query), fetch(other_database, query)
    assert len(offline) == 40_000 and offline == online
    assert offline[0] == (1, "drug 1 100% it's")
    assert fetch(database_url, "SELECT version_num FROM catalog.alembic_version") == [
        ("of000004",)]
    again = runs.upgrade(settings_for(database_url, trees))
    assert again.revisions_applied == 0


def test_sql_backfill_walks_a_composite_key(database_url: str, other_database: str,
                                            tree: Any) -> None:
    """A backfill keyed on (plate, well), whose second column restarts per plate, walks by row
    comparison: every matching row updated exactly once (its counter is 1), as online."""
    trees = tree("bf_composite")
    script = script_of(trees)
    assert '("plate", "well") > ("_migrator_last_0", "_migrator_last_1")' in script

    result = psql(database_url, script)
    assert result.returncode == 0, result.stderr
    runs.upgrade(settings_for(other_database, trees))

    query = "SELECT plate, well, value, counter FROM pairs.readings ORDER BY plate, well"
    offline = fetch(database_url, query)
    assert offline == fetch(other_database, query)
    assert {row[3] for row in offline} == {1} and len(offline) == 12 * 96


def test_revisions_read_the_alembic_config_offline(database_url: str, other_database: str,
                                                   tree: Any) -> None:
    """Offline, a revision sees `context.config` as online: script_location is the plugin's
    tree, sqlalchemy.url a placeholder, attributes a dict, no config file (the revision
    asserts all of it); what it derives renders, and equals what an online run writes."""
    trees = tree("offline_backfill")
    script = script_of(trees)
    assert "COMMENT ON TABLE events IS 'tree catalog';" in script

    assert psql(database_url, script).returncode == 0
    runs.upgrade(settings_for(other_database, trees))
    query = "SELECT obj_description('catalog.events'::regclass, 'pg_class')"
    assert fetch(database_url, query) == fetch(other_database, query) == [("tree catalog",)]


def test_percent_signs_are_not_doubled(database_url: str, other_database: str,
                                       tree: Any) -> None:
    """`CHECK (code LIKE 'x%')` renders with one `%`, and applied by psql it is the constraint
    an online run creates (pg_get_constraintdef)."""
    trees = tree("offline_backfill")
    script = script_of(trees)
    assert "CHECK (code LIKE 'x%')" in script and "%%" not in script

    assert psql(database_url, script).returncode == 0
    runs.upgrade(settings_for(other_database, trees))
    query = ("SELECT pg_get_constraintdef(oid) FROM pg_constraint "
             "WHERE conname = 'events_code_x'")
    assert fetch(database_url, query) == fetch(other_database, query) == [
        ("CHECK ((code ~~ 'x%'::text))",)]


def test_unrenderable_revisions_render_as_a_comment_and_a_stop(database_url: str,
                                                               tree: Any) -> None:
    """Each shape that needs a database (fetchall, scalar, iterating rows, sa.inspect, a
    commit, sys.exit, a Python backfill) renders as a comment naming the revision and why,
    then a statement stopping psql with an error naming it; the rest renders. Applied, the
    script stops at the first one with nothing of it stamped."""
    trees = tree("offline_unrenderable")
    [rendered] = previews.upgrade_sql(Settings(migrations_dir=trees))
    by_id = {r.revision: r for r in rendered.revisions}
    for revision, why in UNRENDERABLE_WHY.items():
        found = by_id[revision]
        assert found.unrenderable == why
        [statement] = found.statements
        assert statement.kind == UNRENDERABLE and not statement.in_transaction
        assert statement.sql.startswith(
            f"-- migrator: revision {revision} ({found.file}) cannot be shown offline: {why}.")
        assert (f"RAISE EXCEPTION '%', 'migrator: revision {revision} of plugin odd cannot be "
                "applied from this script") in statement.sql
    assert [s.sql for s in by_id["un000009"].own] == ["ALTER TABLE things ADD COLUMN note TEXT;"]
    assert rendered.stops_at is not None and rendered.stops_at.revision == "un000002"

    script = format_script([rendered], ScriptHeader("test"))
    result = psql(database_url, script)
    assert result.returncode == 3
    assert re.search(r"ERROR:  migrator: revision un000002 of plugin odd cannot be applied from "
                     r"this script \(it reads a query's result", result.stderr)
    assert fetch(database_url, "SELECT version_num FROM odd.alembic_version") == [("un000001",)]
    assert fetch(database_url, "SELECT revision FROM migrator.history") == [("un000001",)]


def test_dry_run_shows_unrenderable_revisions_without_crashing(database_url: str,
                                                               tree: Any) -> None:
    """--dry-run reads the database, then renders the pending revisions: the ones that need
    a database appear as their comment, and the JSON says why."""
    trees = tree("offline_unrenderable")
    settings = settings_for(database_url, trees)
    runs.upgrade(settings, ["odd"], to="un000001")

    review = previews.upgrade_dry_run(settings)

    text = format_text(review)
    for revision, why in UNRENDERABLE_WHY.items():
        assert f"cannot be shown offline: {why}." in text, revision
    assert "BEGIN;\nCOMMIT;" not in text
    [plugin] = review.as_dict()["plugins"]
    kinds = {r["revision"]: [s["kind"] for s in r["statements"]] for r in plugin["revisions"]}
    assert kinds["un000002"] == [UNRENDERABLE] and kinds["un000009"] == ["revision"]
    transactions = {r["revision"]: r["transaction"] for r in plugin["revisions"]}
    assert transactions["un000002"] == "unrenderable"
    assert transactions["un000009"] == "transactional"


@pytest.mark.parametrize("resume", ["psql", "migrator"])
def test_a_killed_sql_backfill_resumes_from_its_checkpoint(database_url: str, tree: Any,
                                                          resume: str) -> None:
    """The DO block checkpoints each batch in migrator.backfill_progress, as migrator does:
    killed mid-walk, the rerun script — or `migrator upgrade` — resumes after the last
    committed batch (every row's counter is 1: none updated twice), and a finished backfill
    is not walked again."""
    trees = tree("bf_composite")
    revision = trees / "pairs" / "versions" / "0002_backfill_values.py"
    revision.write_text(revision.read_text().replace("batch_size=50,",
                                                     "batch_size=50, pause=0.05,"))
    script = script_of(trees)
    process = subprocess.Popen(
        ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", database_url, "-f", "-"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PGAPPNAME": "offline-backfill"})
    assert process.stdin is not None
    process.stdin.write(script)
    process.stdin.close()
    progress = "SELECT batches_done FROM migrator.backfill_progress"
    wait_until(lambda: fetch(database_url, "SELECT to_regclass('migrator.backfill_progress')")
               != [(None,)] and (fetch(database_url, progress) or [(0,)])[0][0] >= 5,
               "five batches")
    fetch(database_url, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE application_name = 'offline-backfill' "
                        "AND datname = current_database()")
    process.wait(timeout=30)
    assert process.returncode != 0
    assert fetch(database_url, "SELECT version_num FROM pairs.alembic_version") == [
        ("pairs_0001",)]
    done_before = fetch(database_url, progress)[0][0]
    assert 5 <= done_before < 24

    if resume == "migrator":
        runs.upgrade(settings_for(database_url, trees))
        assert fetch(database_url, "SELECT DISTINCT counter FROM pairs.readings") == [(1,)]
        assert fetch(database_url, "SELECT status, rows_done FROM "
                                   "migrator.backfill_progress") == [("done", 12 * 96)]
        return
    rest = format_script(previews.upgrade_sql(Settings(migrations_dir=trees), ["pairs"],
                                              start="pairs_0001"), ScriptHeader("rest"))
    result = psql(database_url, rest)
    assert result.returncode == 0, result.stderr
    assert fetch(database_url, "SELECT DISTINCT counter FROM pairs.readings") == [(1,)]
    assert fetch(database_url, "SELECT status, batches_done, rows_done FROM "
                               "migrator.backfill_progress") == [("done", 24, 12 * 96)]
    assert fetch(database_url, "SELECT version_num FROM pairs.alembic_version") == [
        ("pairs_0002",)]

    again = psql(database_url, rest)  # its stamp's UPDATE finds nothing to move
    assert again.returncode == 0, again.stderr
    assert fetch(database_url, "SELECT DISTINCT counter FROM pairs.readings") == [(1,)]


def test_an_error_naming_an_object_renders_the_same_bytes_every_run(tmp_path: Path,
                                                                    run_cli: Any) -> None:
    """A revision that fails offline with an error quoting an object's repr (an unnamed
    constraint: `op.drop_constraint(None, ...)`, as autogenerate leaves it) renders as a stop
    whose reason carries no memory address: two runs print the same script."""
    root = tmp_path / "plugins"
    write_plugin(root, "core", [
        Rev("a1", None, "op.execute('CREATE TABLE things (id int PRIMARY KEY)')"),
        Rev("a2", "a1", "op.drop_constraint(None, 'things', type_='foreignkey')")])
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIGRATOR_")}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent)
    first, second = (run_cli("--migrations-dir", root, "upgrade", "--sql", env=env)
                     for _ in range(2))
    assert first.returncode == second.returncode == 0, first.stderr
    assert "revision a2 (0002_a2.py) cannot be shown offline: it raises CompileError" in (
        first.stdout)
    assert " at 0x" not in first.stdout
    assert first.stdout == second.stdout
