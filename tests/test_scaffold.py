"""`migrator new-plugin` and `migrator revision [--autogenerate]`: the files plugin authors
start from, through the CLI as they use it.

Autogenerate runs against real PostgreSQL holding the whole example platform, and must see
the plugin's own schema only: core's and analysis_results' tables are never proposed for
dropping, and the plugin's tables are written without a schema (search_path supplies it).
"""

from __future__ import annotations

import ast
import json
import re
import shutil
import tomllib
from pathlib import Path
from typing import Any

import psycopg
import pytest
from conftest import RunCli

from migrator.discovery import Plugin
from migrator.scripts import load_script

REPO_ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_PLATFORM = REPO_ROOT / "plugin_migrations"
PANELS = Plugin.from_directory(EXAMPLE_PLATFORM / "panels", source="example")
PANELS_HEAD = PANELS.head
NEXT_PANELS_NUMBER = f"{len(PANELS.revisions) + 1:04d}"  # the tree numbers its files 0001_...

# What a plugin author adds to panels/models.py: a column with an index, and a new table.
MODEL_CHANGES = '''

from sqlalchemy import Float  # noqa: E402


Panel.__table__.append_column(Column("score", Float, nullable=True))
Index("ix_panels_score", Panel.__table__.c.score)


class PanelTag(Base):
    __tablename__ = "panel_tags"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    panel_id: Mapped[uuid.UUID] = mapped_column(Uuid, ForeignKey("panels.id"))
    tag: Mapped[str] = mapped_column(Text)
'''


@pytest.fixture
def platform(tmp_path: Path) -> Path:
    """A copy of the example platform at ./plugin_migrations of the CLI's working directory."""
    return Path(shutil.copytree(EXAMPLE_PLATFORM, tmp_path / "plugin_migrations",
                                ignore=shutil.ignore_patterns("__pycache__")))


def module_values(path: Path) -> dict[str, Any]:
    """The literal module-level assignments of a revision file."""
    values = {}
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            assert node.value is not None
            values[node.target.id] = ast.literal_eval(node.value)
    return values


def created_path(stdout: str, cwd: Path) -> Path:
    match = re.search(r"^created (\S+\.py) ", stdout, re.M)
    assert match, stdout
    return cwd / match.group(1)


def test_new_plugin_makes_a_tree_with_a_commented_plugin_toml(
        run_cli: RunCli, platform: Path, tmp_path: Path) -> None:
    """new-plugin creates NAME/versions/ and a plugin.toml whose settings parse, whose other
    keys are commented out, and which discovery accepts (a plugin without revisions yet)."""
    result = run_cli("new-plugin", "reports", "--depends-on", "core",
                     "--description", 'Weekly "reports"')
    assert result.returncode == 0, result.stderr
    assert "migrator revision --plugin reports" in result.stdout

    assert (platform / "reports" / "versions").is_dir()
    text = (platform / "reports" / "plugin.toml").read_text()
    assert tomllib.loads(text) == {"description": 'Weekly "reports"', "depends_on": ["core"]}
    for key in ("# schema = ", "# models = "):
        assert key in text
    listed = run_cli("plugins", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    reports = {p["name"]: p for p in json.loads(listed.stdout)["plugins"]}["reports"]
    assert (reports["schema"], reports["depends_on"], reports["head"]) == (
        "reports", ["core"], None)


@pytest.mark.parametrize(("args", "message"), [
    (["new-plugin", "Reports"], "plugin name 'Reports' must match"),
    (["new-plugin", "panels"], "plugin_migrations/panels already exists"),
    (["new-plugin", "reports", "--schema", "migrator"], "schema 'migrator' is not allowed"),
    (["new-plugin", "reports", "--depends-on", "Core"], "'Core' is not a valid plugin name"),
])
def test_new_plugin_refuses_bad_names(run_cli: RunCli, platform: Path, args: list[str],
                                      message: str) -> None:
    """Invalid or taken names are usage errors (exit 2) and create nothing."""
    before = sorted(p.name for p in platform.iterdir())
    result = run_cli(*args)
    assert result.returncode == 2
    assert message in result.stderr
    assert sorted(p.name for p in platform.iterdir()) == before


def test_revision_writes_alembic_revision_files(run_cli: RunCli, platform: Path,
                                                tmp_path: Path) -> None:
    """revision needs no database; it writes Alembic's file layout (docstring with Revision
    ID / Revises / Create Date, revision, down_revision, branch_labels, depends_on), numbered
    like the tree, on top of the head; Alembic and migrator read the result alike."""
    assert run_cli("new-plugin", "reports").returncode == 0

    first = run_cli("revision", "--plugin", "reports", "-m", "Create reports table!")
    assert first.returncode == 0, first.stderr
    first_path = created_path(first.stdout, tmp_path)
    assert first_path == platform / "reports" / "versions" / "0001_create_reports_table.py"
    second = run_cli("revision", "-p", "reports", "-m", "add title", "--rev-id", "r0002title")
    second_path = created_path(second.stdout, tmp_path)
    assert second_path.name == "0002_add_title.py"

    one, two = module_values(first_path), module_values(second_path)
    assert re.fullmatch(r"[0-9a-f]{12}", one["revision"])
    assert one["down_revision"] is None
    assert (two["revision"], two["down_revision"]) == ("r0002title", one["revision"])
    assert two["branch_labels"] is None and two["depends_on"] is None
    text = second_path.read_text()
    assert text.startswith('"""add title\n\nRevision ID: r0002title\nRevises: '
                           f'{one["revision"]}\nCreate Date: ')
    assert "def upgrade() -> None:\n    pass" in text
    assert f"revises {one['revision']}" in second.stdout

    plugin = Plugin.from_directory(platform / "reports", source="test")
    assert plugin.head == "r0002title"
    assert plugin.revision("r0002title").message == "add title"  # type: ignore[union-attr]
    assert load_script(plugin).get_heads() == ["r0002title"]

    panels = run_cli("revision", "--plugin", "panels", "-m", "next")
    assert created_path(panels.stdout, tmp_path).name == f"{NEXT_PANELS_NUMBER}_next.py"


def test_revision_follows_the_tree_naming_and_template(run_cli: RunCli, tmp_path: Path) -> None:
    """A tree named Alembic's way gets `<rev>_<slug>.py`; a tree with its own script.py.mako
    gets it used."""
    tree = tmp_path / "plugin_migrations" / "legacy"
    (tree / "versions").mkdir(parents=True)
    (tree / "versions" / "1a2b3c4d5e6f_init.py").write_text(
        '"""init"""\nrevision = "1a2b3c4d5e6f"\ndown_revision = None\n\n\n'
        "def upgrade() -> None:\n    pass\n\n\ndef downgrade() -> None:\n    pass\n")
    (tree / "script.py.mako").write_text(
        '"""${message}"""\n# house template\nrevision = ${repr(up_revision)}\n'
        "down_revision = ${repr(down_revision)}\n\n\ndef upgrade() -> None:\n    pass\n\n\n"
        "def downgrade() -> None:\n    pass\n")

    result = run_cli("revision", "--plugin", "legacy", "-m", "second step", "--rev-id",
                     "9f8e7d6c5b4a")
    assert result.returncode == 0, result.stderr
    path = created_path(result.stdout, tmp_path)
    assert path.name == "9f8e7d6c5b4a_second_step.py"
    assert "# house template" in path.read_text()
    assert "down_revision = '1a2b3c4d5e6f'" in path.read_text()


def test_revision_merges_two_heads(run_cli: RunCli, platform: Path, tmp_path: Path) -> None:
    """With two heads, read-only commands show both and migrating ones say to merge;
    `revision` then writes one whose down_revision is both heads, and the tree has one head
    again."""
    versions = platform / "panels" / "versions"
    head_file = PANELS.revision(PANELS_HEAD).path  # type: ignore[arg-type, union-attr]
    branch = head_file.read_text().replace(f'revision: str = "{PANELS_HEAD}"',
                                           'revision: str = "b1a2c3d4e5f6"')
    assert "b1a2c3d4e5f6" in branch
    (versions / f"{head_file.stem}_branch.py").write_text(branch)
    shown = run_cli("heads", "--format", "json")
    assert shown.returncode == 0, shown.stderr
    assert {p["name"]: p["heads"] for p in json.loads(shown.stdout)["plugins"]}[
        "panels"] == sorted(["b1a2c3d4e5f6", PANELS_HEAD])
    refused = run_cli("upgrade", "--sql")
    assert refused.returncode == 2
    assert 'migrator merge --plugin panels -m "merge heads"' in refused.stderr

    merged = run_cli("revision", "--plugin", "panels", "-m", "merge")
    assert merged.returncode == 0, merged.stderr
    values = module_values(created_path(merged.stdout, tmp_path))
    assert set(values["down_revision"]) == {"b1a2c3d4e5f6", PANELS_HEAD}
    heads = run_cli("heads", "--format", "json")
    assert heads.returncode == 0, heads.stderr
    assert {p["name"]: p["head"] for p in json.loads(heads.stdout)["plugins"]}[
        "panels"] == values["revision"]


def test_autogenerate_compares_the_plugins_own_schema_only(
        run_cli: RunCli, platform: Path, tmp_path: Path, database_url: str) -> None:
    """With the whole platform at head and panels' models changed, autogenerate writes exactly
    the change (unqualified, in panels' schema), nothing about core, analysis_results, public
    or the version table; once applied, a second autogenerate finds nothing."""
    url = ["--database-url", database_url]
    assert run_cli(*url, "upgrade").returncode == 0
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE public.unrelated (id int)")  # the platform's own table
    unchanged = run_cli(*url, "revision", "--plugin", "panels", "-m", "nothing", "--autogenerate")
    assert unchanged.returncode == 0, unchanged.stderr
    assert "no changes detected" in unchanged.stdout
    created_path(unchanged.stdout, tmp_path).unlink()

    models = platform / "panels" / "models.py"
    models.write_text(models.read_text() + MODEL_CHANGES)
    result = run_cli(*url, "revision", "--plugin", "panels", "-m", "add score and tags",
                     "--autogenerate")
    assert result.returncode == 0, result.stderr
    path = created_path(result.stdout, tmp_path)
    assert path.name == f"{NEXT_PANELS_NUMBER}_add_score_and_tags.py"
    assert "detected add_column panels.score" in result.stdout
    assert "detected add_table panel_tags" in result.stdout
    text = path.read_text()
    upgrade = text[text.index("def upgrade"):text.index("def downgrade")]
    assert "op.add_column('panels', sa.Column('score', sa.Float()" in upgrade
    assert "op.create_table('panel_tags'" in upgrade
    assert "op.create_index('ix_panels_score', 'panels', ['score']" in upgrade
    assert "schema=" not in text
    for other in ("accounts", "experiments", "analysis_results", "unrelated", "alembic_version"):
        assert f"'{other}'" not in text, other
    assert module_values(path)["down_revision"] == PANELS_HEAD

    applied = run_cli(*url, "upgrade", "--plugin", "panels")
    assert applied.returncode == 0, applied.stderr
    with psycopg.connect(database_url) as conn:
        columns = {r[0] for r in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = 'panels' "
            "AND table_name = 'panels'")}
        assert "score" in columns
    again = run_cli(*url, "revision", "--plugin", "panels", "-m", "again", "--autogenerate")
    assert again.returncode == 0, again.stderr
    assert "no changes detected" in again.stdout


def test_autogenerate_needs_head_models_and_a_database(
        run_cli: RunCli, platform: Path, tmp_path: Path, database_url: str) -> None:
    """Autogenerate against a database behind the head, for a plugin without models, or with
    no database configured: exit 2 with what to do, and no file written."""
    before = sorted((platform / "panels" / "versions").iterdir())
    behind = run_cli("--database-url", database_url, "revision", "--plugin", "panels",
                     "-m", "x", "--autogenerate")
    assert behind.returncode == 2
    assert f"the database is at base, its head is {PANELS_HEAD}" in behind.stderr
    assert "migrator upgrade --plugin panels" in behind.stderr

    no_models = run_cli("--database-url", database_url, "revision", "--plugin", "core", "-m",
                        "x", "--autogenerate")
    assert no_models.returncode == 2
    assert "names no models" in no_models.stderr

    no_database = run_cli("revision", "--plugin", "panels", "-m", "x", "--autogenerate")
    assert no_database.returncode == 2
    assert "no database configured" in no_database.stderr

    unknown = run_cli("revision", "--plugin", "nope", "-m", "x")
    assert unknown.returncode == 2
    assert "migrator new-plugin nope" in unknown.stderr
    assert sorted((platform / "panels" / "versions").iterdir()) == before
