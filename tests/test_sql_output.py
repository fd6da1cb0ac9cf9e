"""`upgrade --sql` and `downgrade --sql`: the SQL migrator runs, rendered offline.

No database is configured (or the configured one is unreachable) for the rendering itself;
the tests that apply the rendered script do so on a fresh database of the server under test.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import psycopg
from helpers import chain
from psycopg import sql

from migrator import commands, previews, runs
from migrator.config import DatabaseUrl, Settings
from migrator.sql_output import (
    AUTOCOMMIT_BLOCK,
    BACKFILL,
    HISTORY,
    STAMP,
    TRANSACTIONAL,
)
from migrator.sql_script import ScriptHeader, format_script

REPO_ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_PLATFORM = REPO_ROOT / "plugin_migrations"



CORE, PANELS, RESULTS = chain("core"), chain("panels"), chain("analysis_results")
TOTAL = len(CORE) + len(PANELS) + len(RESULTS)
UNREACHABLE = "postgresql://postgres@127.0.0.1:1/postgres"


def offline(migrations_dir: Path) -> Settings:
    return Settings(migrations_dir=migrations_dir)


def sql_of(run_cli: Any, migrations_dir: Path, *args: str, **kwargs: Any) -> str:
    result = run_cli("--migrations-dir", migrations_dir, *args, **kwargs)
    assert result.returncode == 0, result.stderr
    return str(result.stdout)


def apply_script(url: str, script: str, *, fails: bool = False) -> str:
    """Run a rendered script with psql itself, stopping at the first error; its stderr."""
    result = subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url, "-f", "-"],
                            input=script, capture_output=True, text=True, check=False)
    assert (result.returncode != 0) == fails, result.stderr
    return result.stderr


def versions(url: str, schema: str) -> list[str]:
    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute(sql.SQL("SELECT version_num FROM {}").format(
            sql.Identifier(schema, "alembic_version"))).fetchall()]


def test_upgrade_sql_needs_no_database(run_cli: Any, platform: Path) -> None:
    """`upgrade --sql` renders every plugin in dependency order with no database configured,
    and with an unreachable one configured it still never connects."""
    text = sql_of(run_cli, platform, "upgrade", "--sql")
    unreachable = sql_of(run_cli, platform, "--database-url", UNREACHABLE, "--connect-timeout",
                         "0", "upgrade", "--sql")

    assert unreachable == text
    plugins = re.findall(r"^-- Plugin (\w+) \(schema (\w+)\)", text, re.M)
    assert plugins == [("core", "core"), ("analysis_results", "analysis_results"),
                       ("panels", "panels")]
    for schema in ("core", "panels", "analysis_results"):
        assert f'CREATE SCHEMA IF NOT EXISTS "{schema}";' in text
        assert f'SET search_path TO "{schema}", "public";' in text
        assert f'CREATE TABLE IF NOT EXISTS "{schema}"."alembic_version" (' in text
    assert text.count("SET lock_timeout = '5000ms';") == 3
    assert "CREATE SCHEMA IF NOT EXISTS migrator;" in text
    # Each revision: a header naming it, its statements, its stamp and its history row.
    assert "-- Revision 599d78f5272d: create accounts\n-- File: 0001_create_accounts.py\n" in text
    assert ("INSERT INTO core.alembic_version (version_num) VALUES ('599d78f5272d')" in text)
    assert ("UPDATE panels.alembic_version SET version_num='f6f7c7c2d5c1' WHERE "
            "panels.alembic_version.version_num = '7c3aa4ddbdb2';") in text
    # One history row per revision, through migrator.record_attempt, but none for panels'
    # Python backfill, which cannot be shown offline.
    assert text.count("SELECT migrator.record_attempt(") == TOTAL - 1
    assert f"-- Stops at revision {PANELS[-1]}: it cannot be shown offline" in text
    assert "transaction: one transaction, with its version stamp and history row" in text
    # panels' indexes are built concurrently, outside the revision's transaction.
    indexes = text[text.index("-- Revision 7c3aa4ddbdb2"):text.index("-- Revision f6f7c7c2d5c1")]
    assert "transaction: autocommit block (5 statements outside a transaction" in indexes
    # No empty BEGIN/COMMIT pair before them: they run outside any transaction block.
    assert "BEGIN;\nCOMMIT;" not in text
    assert indexes.index("---\nCREATE INDEX CONCURRENTLY IF NOT EXISTS ix_panels_experiment_id"
                         ) < indexes.index("BEGIN;\nUPDATE panels.alembic_version")


def test_upgrade_sql_is_byte_identical_across_runs_and_machines(
    run_cli: Any, cli_env: dict[str, str], platform: Path, tmp_path: Path
) -> None:
    """Two runs, from different directories, host names and time zones, print the same bytes."""
    elsewhere = Path(shutil.copytree(platform, tmp_path / "elsewhere" / "trees"))
    first = sql_of(run_cli, platform, "upgrade", "--sql")
    other_env = {**cli_env, "HOSTNAME": "another-machine", "TZ": "Pacific/Auckland"}
    second = sql_of(run_cli, elsewhere, "upgrade", "--sql", env=other_env, cwd=elsewhere)

    assert first == second
    assert str(platform) not in first and "another-machine" not in second


def test_output_dir_writes_one_file_per_plugin(run_cli: Any, platform: Path,
                                               tmp_path: Path) -> None:
    """`--output-dir DIR` writes `<plugin>.sql` per plugin, each the plugin's own --sql."""
    out = tmp_path / "sql"
    listing = sql_of(run_cli, platform, "upgrade", "--sql", "--output-dir", out)

    assert sorted(p.name for p in out.iterdir()) == [
        "analysis_results.sql", "core.sql", "panels.sql"]
    assert listing.split() == [str(out / f"{n}.sql") for n in ("core", "analysis_results",
                                                                 "panels")]
    for name in ("core", "analysis_results", "panels"):
        alone = sql_of(run_cli, platform, "upgrade", "--sql", "--plugin", name)
        assert (out / f"{name}.sql").read_text() == alone


def test_from_renders_only_the_revisions_after_it(run_cli: Any, platform: Path) -> None:
    """`--plugin panels --from REV` renders REV's successors only, stamping up from REV; a
    unique prefix works, and --from without exactly one --plugin is a usage error."""
    text = sql_of(run_cli, platform, "upgrade", "--sql", "--plugin", "panels", "--from",
                  PANELS[0][:6])

    assert re.findall(r"^-- Revision (\w+)", text, re.M) == list(PANELS[1:])
    assert f"-- Plugin panels (schema panels): a304542a37f6 -> {PANELS[-1]}" in text
    assert "WHERE panels.alembic_version.version_num = 'a304542a37f6';" in text
    assert "-- Plugin core" not in text

    at_head = sql_of(run_cli, platform, "upgrade", "--sql", "--plugin", "panels", "--from",
                     PANELS[-1])
    assert "-- Nothing to do." in at_head and "BEGIN;" not in at_head

    no_plugin = run_cli("--migrations-dir", platform, "upgrade", "--sql", "--from", PANELS[0])
    assert no_plugin.returncode == 2
    assert "--from and --to need exactly one --plugin" in no_plugin.stderr
    unknown = run_cli("--migrations-dir", platform, "upgrade", "--sql", "--plugin", "panels",
                      "--from", "nope1234")
    assert unknown.returncode == 2 and "not in the tree of plugin 'panels'" in unknown.stderr
    not_sql = run_cli("--migrations-dir", platform, "upgrade", "--from", PANELS[0])
    assert not_sql.returncode == 2 and "go with --sql" in not_sql.stderr


def test_rendered_script_does_what_upgrade_does(database_url: str, platform: Path) -> None:
    """The --sql script, run in one session like `psql -f`, does what `migrator upgrade`
    would up to panels' Python backfill, which it cannot show: psql stops there with an error
    naming it, nothing of it stamped; `migrator upgrade` then finishes, and every plugin is at
    head with a history row per revision and `status --check` satisfied."""
    rendered = previews.upgrade_sql(offline(platform))
    stderr = apply_script(database_url, format_script(rendered, ScriptHeader("test")),
                          fails=True)
    assert (f"ERROR:  migrator: revision {PANELS[-1]} of plugin panels cannot be applied from "
            "this script (its backfill 'panels_canonical_drug_names' uses transform=") in stderr
    assert versions(database_url, "panels") == [PANELS[-2]]

    settings = Settings(database_url=DatabaseUrl.parse(database_url, source="test"),
                        migrations_dir=platform, connect_timeout=10)
    runs.upgrade(settings)
    assert not commands.status(settings).needs_attention
    assert versions(database_url, "panels") == [PANELS[-1]]
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT plugin, revision, direction, applied_by, outcome "
                            "FROM migrator.history ORDER BY id").fetchall()
        indexes = {r[0] for r in conn.execute(
            "SELECT indexname FROM pg_indexes WHERE schemaname = 'panels'").fetchall()}
    assert [(r[0], r[1]) for r in rows] == (
        [("core", r) for r in CORE] + [("analysis_results", r) for r in RESULTS]
        + [("panels", r) for r in PANELS])
    assert {(r[2], r[4]) for r in rows} == {("up", "applied")}
    assert rows[0][3].startswith("sql script (")
    assert rows[-1][3] != rows[0][3]  # the last one applied by migrator, not the script
    assert "uq_panels_experiment_id_name" in indexes


def test_revisions_are_data_with_kinds_and_transaction_modes(platform: Path) -> None:
    """The rendering is data: each revision's own statements, stamp and history row are told
    apart, and the transaction mode says whether an autocommit block is used."""
    rendered = {p.plugin.name: p for p in previews.upgrade_sql(offline(platform))}
    panels = rendered["panels"]
    first, indexes, notes = panels.revisions[:3]

    assert (first.file, first.message, first.transaction) == (
        "0001_create_panels.py", "create panels", TRANSACTIONAL)
    assert indexes.transaction == AUTOCOMMIT_BLOCK
    assert [s.sql.split(" ON ")[0] for s in indexes.own] == [
        f"CREATE {'UNIQUE ' if 'uq_' in n else ''}INDEX CONCURRENTLY IF NOT EXISTS {n}"
        for n in ("ix_panels_experiment_id", "ix_panels_created_at",
                  "ix_panels_experiment_id_created_at", "uq_panels_experiment_id_name",
                  "ix_panels_drugs")]
    assert not any(s.in_transaction for s in indexes.own)
    assert [s.sql for s in notes.own] == ["ALTER TABLE panels ADD COLUMN notes TEXT;"]
    assert [s.kind for s in notes.statements if s.kind in (STAMP, HISTORY)] == [STAMP, HISTORY]
    assert panels.start == () and panels.end == (PANELS[-1],)


def test_backfill_renders_as_a_batch_loop_outside_the_transaction(
    tree: Any, run_cli: Any
) -> None:
    """A backfill revision renders as a DO block looping over batches, outside any
    transaction block (no empty BEGIN/COMMIT before it), before the stamp's transaction,
    marked as a backfill with its specification."""
    trees = tree("sql_backfill")
    [catalog] = previews.upgrade_sql(offline(trees))
    backfill = catalog.revisions[1]

    [statement] = backfill.own
    assert statement.kind == BACKFILL and not statement.in_transaction
    assert statement.backfill is not None
    assert (statement.backfill["table"], statement.backfill["set"],
            statement.backfill["batch_size"]) == ("items", "name_upper = upper(name)", 500)
    text = sql_of(run_cli, trees, "upgrade", "--sql")
    loop = text[text.index("-- migrator backfill 'items'"):]
    assert loop.startswith("-- migrator backfill 'items' on \"items\": every row up to the "
                           "largest key present when it starts, in key order (\"id\"), batches "
                           "of 500, one transaction (COMMIT) per batch")
    assert "\nDO $migrator$\n" in loop and "LIMIT 500" in loop and "        COMMIT;\n" in loop
    assert loop.index("$migrator$;\nBEGIN;\nUPDATE catalog.alembic_version") > 0
    assert "BEGIN;\nCOMMIT;" not in text


def test_downgrade_sql_reverts_from_the_head_offline(
    database_url: str, platform: Path, run_cli: Any
) -> None:
    """`downgrade --sql --to base` renders the downgrades newest first from the head (or from
    --from), with `down` history rows; applied after an upgrade, it empties the plugin."""
    text = sql_of(run_cli, platform, "downgrade", "--plugin", "panels", "--to", "base", "--sql")
    assert re.findall(r"^-- Revision (\w+)", text, re.M) == list(reversed(PANELS))
    assert (f"-- Plugin panels (schema panels): {PANELS[-1]} -> base, {len(PANELS)} revisions "
            "to revert") in text
    assert text.count("'panels', 'panels', ") == len(PANELS) and "'down'" in text
    assert "DELETE FROM panels.alembic_version WHERE panels.alembic_version.version_num = " \
        "'a304542a37f6';" in text

    partial = sql_of(run_cli, platform, "downgrade", "--plugin", "panels", "--to", "-1", "--sql",
                     "--from", PANELS[1])
    assert re.findall(r"^-- Revision (\w+)", partial, re.M) == [PANELS[1]]

    runs.upgrade(Settings(database_url=DatabaseUrl.parse(database_url, source="test"),
                              migrations_dir=platform, connect_timeout=10))
    apply_script(database_url, text)
    assert versions(database_url, "panels") == []
    assert versions(database_url, "core") == [CORE[-1]]

    ahead = run_cli("--migrations-dir", platform, "downgrade", "--plugin", "panels", "--to",
                    PANELS[2], "--sql", "--from", PANELS[1])
    assert ahead.returncode == 2 and "downgrade only goes back" in ahead.stderr


def test_lock_timeout_flag_reaches_the_preamble(run_cli: Any, platform: Path) -> None:
    """`--lock-timeout 2s` renders the lock_timeout the run would use."""
    text = sql_of(run_cli, platform, "upgrade", "--sql", "--plugin", "core", "--lock-timeout",
                  "2s")
    assert "SET lock_timeout = '2000ms';" in text and "5000ms" not in text


def test_sql_and_dry_run_exclude_each_other(run_cli: Any, platform: Path) -> None:
    """--sql with --dry-run, or --format without --dry-run, is a usage error (exit 2)."""
    both = run_cli("--migrations-dir", platform, "upgrade", "--sql", "--dry-run")
    assert both.returncode == 2 and "exclude each other" in both.stderr
    formatted = run_cli("--migrations-dir", platform, "upgrade", "--sql", "--format", "json")
    assert formatted.returncode == 2 and "--format goes with --dry-run" in formatted.stderr
