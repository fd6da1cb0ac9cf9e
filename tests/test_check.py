"""`migrator check`: edited applied revisions, unknown revisions, orphaned plugins, model drift
and INVALID indexes, each named with what to do; exit 5 on any finding, 0 when clean.

The `check_platform` tree: `core` (accounts, an index built concurrently), `notes` (depends on
core, with SQLAlchemy models in `notes/models.py`), `tags` and `gone` (one table each).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from helpers import error_lines

RunCli = Callable[..., subprocess.CompletedProcess[str]]
Tree = Callable[[str], Path]


def migrator(run_cli: RunCli, database_url: str, migrations: Path, *args: str
             ) -> subprocess.CompletedProcess[str]:
    return run_cli("--database-url", database_url, "--migrations-dir", migrations, *args)


def execute(url: str, *statements: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


@pytest.fixture
def platform(tree: Tree, run_cli: RunCli, database_url: str) -> Path:
    """The check_platform tree, upgraded to head."""
    migrations = tree("check_platform")
    result = migrator(run_cli, database_url, migrations, "upgrade")
    assert result.returncode == 0, result.stderr
    return migrations


def test_check_on_an_empty_database_finds_nothing_and_creates_nothing(
    tree: Tree, run_cli: RunCli, database_url: str,
) -> None:
    """Before any upgrade `check` exits 0, skips the drift check of `notes` (not at head), and
    creates nothing, not even the migrator schema."""
    result = migrator(run_cli, database_url, tree("check_platform"), "check", "--format", "json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {
        "findings": [], "plugins_checked": ["core", "gone", "tags", "notes"],
        "drift_skipped": ["notes"]}
    with psycopg.connect(database_url) as conn:
        schemas = conn.execute("SELECT nspname FROM pg_namespace WHERE nspname NOT LIKE 'pg\\_%' "
                               "AND nspname NOT IN ('public', 'information_schema')").fetchall()
    assert schemas == []


def test_check_is_clean_after_an_upgrade(platform: Path, run_cli: RunCli,
                                          database_url: str) -> None:
    """At head with nothing edited, `check` exits 0 and says so in one line."""
    result = migrator(run_cli, database_url, platform, "check")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "check: no findings (4 plugin(s) checked)\n"
    assert error_lines(result.stderr) == []


def test_check_finds_each_kind_of_problem_and_says_what_to_do(
    platform: Path, run_cli: RunCli, database_url: str,
) -> None:
    """An edited applied revision, an unknown revision, an uninstalled plugin, drift in the
    models' schema (and only there) and an INVALID index are each one finding naming plugin and
    revision or object with what to do; exit 5, and the session only reads."""
    with (platform / "core" / "versions" / "0001_create_accounts.py").open("a") as edited:
        edited.write("EDITED_AFTER_IT_WAS_APPLIED = True  # code: comments alone do not count\n")
    shutil.rmtree(platform / "gone")
    execute(
        database_url,
        "UPDATE tags.alembic_version SET version_num = 'tags_9999'",
        # drift in notes' schema, and changes elsewhere that the notes models must not see
        "ALTER TABLE notes.notes ADD COLUMN extra text",
        "ALTER TABLE core.accounts ADD COLUMN nickname text",
        "CREATE TABLE public.host_table (id integer)",
        # a unique index built concurrently over duplicates fails and stays INVALID
        "INSERT INTO core.accounts VALUES (1, 'a@example.com'), (2, 'a@example.com')",
    )
    with pytest.raises(psycopg.errors.UniqueViolation):
        execute(database_url, "CREATE UNIQUE INDEX CONCURRENTLY ux_accounts_email "
                "ON core.accounts (email)")
    # Anything but a read would now fail: check must not need to write.
    execute(database_url, "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET "
            "default_transaction_read_only = on', current_database()); END $$")

    result = migrator(run_cli, database_url, platform, "check", "--format", "json")
    assert result.returncode == 5, result.stderr
    assert "Traceback" not in result.stderr
    document = json.loads(result.stdout)
    found = {(f["kind"], f["plugin"], f["revision"], f["object"]): f
             for f in document["findings"]}
    edited_file = str(platform / "core" / "versions" / "0001_create_accounts.py")
    assert set(found) == {
        ("changed_revision", "core", "core_0001", edited_file),
        ("unknown_revision", "tags", "tags_9999", "tags.alembic_version"),
        ("orphaned_plugin", "gone", "gone_0001", "gone"),
        ("model_drift", "notes", None, "notes.notes.extra"),
        ("invalid_index", "core", None, "core.ux_accounts_email"),
    }
    assert len(document["findings"]) == len(found)

    changed = found["changed_revision", "core", "core_0001", edited_file]
    assert "0001_create_accounts.py" in changed["message"]
    assert "restore the file as it was applied" in changed["action"]
    assert "migrator revision --plugin core" in changed["action"]
    assert "migrator repair --plugin core" in changed["action"]
    unknown = found["unknown_revision", "tags", "tags_9999", "tags.alembic_version"]
    assert "no file in" in unknown["message"]
    assert "migrator stamp --plugin tags" in unknown["action"]
    orphan = found["orphaned_plugin", "gone", "gone_0001", "gone"]
    assert "no installed plugin tree" in orphan["message"]
    assert "reinstall the plugin" in orphan["action"]
    drift = found["model_drift", "notes", None, "notes.notes.extra"]
    assert drift["message"] == ("plugin 'notes': column notes.notes.extra is in the database, not "
                                "in the models (models notes.models:metadata against schema "
                                "'notes')")
    assert "--autogenerate" in drift["action"]
    invalid = found["invalid_index", "core", None, "core.ux_accounts_email"]
    assert "INVALID" in invalid["message"]
    assert 'DROP INDEX CONCURRENTLY "core"."ux_accounts_email"' in invalid["action"]

    [line] = error_lines(result.stderr)
    assert line == ("migrator: error: check found 5 problem(s) (1 changed_revision, "
                    "1 unknown_revision, 1 orphaned_plugin, 1 model_drift, 1 invalid_index) in "
                    "plugin(s) core, gone, notes, tags; each finding above says what to do")

    table = migrator(run_cli, database_url, platform, "check")
    assert table.returncode == 5, table.stderr
    for kind, plugin, revision, obj in found:
        assert kind in table.stdout and plugin in table.stdout
        assert (revision or obj) in table.stdout


def test_models_drift_both_ways_in_types_nullability_tables_and_columns(
    platform: Path, run_cli: RunCli, database_url: str,
) -> None:
    """Models that gained a column, a table and a type or nullability change are drift too;
    each difference is its own finding."""
    models = platform / "notes" / "models.py"
    models.write_text(models.read_text().replace(
        'Column("body", Text, nullable=False),',
        'Column("body", String(200), nullable=True), Column("title", Text),').replace(
        "from sqlalchemy import Column,", "from sqlalchemy import String, Column,"))
    execute(database_url, "CREATE TABLE notes.scratch (id integer)")

    result = migrator(run_cli, database_url, platform, "check", "--format", "json")
    assert result.returncode == 5, result.stderr
    messages = sorted(f["message"].split(" (models ")[0] for f in
                      json.loads(result.stdout)["findings"])
    assert messages == [
        "plugin 'notes': column notes.notes.body differs in nullable: NOT NULL in the database, "
        "NULL in the models",
        "plugin 'notes': column notes.notes.body differs in type: TEXT in the database, "
        "VARCHAR(200) in the models",
        "plugin 'notes': column notes.notes.title is in the models, not in the database",
        "plugin 'notes': table notes.scratch is in the database, not in the models",
    ]


def test_models_that_cannot_be_loaded_are_a_usage_error_naming_plugin_toml(
    platform: Path, run_cli: RunCli, database_url: str,
) -> None:
    """`models` naming a module that does not import exits 2 naming plugin.toml and the fix."""
    toml = platform / "notes" / "plugin.toml"
    toml.write_text(toml.read_text().replace("notes.models:metadata", "notes.missing:metadata"))
    result = migrator(run_cli, database_url, platform, "check")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    [line] = error_lines(result.stderr)
    assert str(toml) in line
    assert "models 'notes.missing:metadata' cannot be loaded (ModuleNotFoundError" in line


def _check_json(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert result.returncode in (0, 5), result.stderr
    document: dict[str, Any] = json.loads(result.stdout)
    return document


def test_an_edited_revision_that_is_not_applied_yet_is_not_a_finding(
    tree: Tree, run_cli: RunCli, database_url: str,
) -> None:
    """Only applied revisions are compared: editing a pending one is normal work."""
    migrations = tree("check_platform")
    applied = migrator(run_cli, database_url, migrations, "upgrade", "--plugin", "core",
                       "--to", "core_0001")
    assert applied.returncode == 0, applied.stderr
    with (migrations / "core" / "versions" / "0002_index_accounts_email.py").open("a") as edit:
        edit.write("STILL_BEING_WRITTEN = True\n")
    document = _check_json(migrator(run_cli, database_url, migrations, "check", "--format",
                                    "json"))
    assert document["findings"] == []
