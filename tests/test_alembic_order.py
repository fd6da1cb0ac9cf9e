"""`status`'s pending list, `history` and the order `upgrade` applies revisions are exactly
plain Alembic's (its `ScriptDirectory` walk), on branch-and-merge trees whose file names sort
against Alembic's order; the no-op path still imports no alembic."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers import fetch, settings_for
from treebuilder import Rev, write_plugin

from migrator import commands, runs, scripts
from migrator.discovery import discover
from migrator.errors import TreeError


def table(name: str) -> tuple[str, str]:
    return (f"op.execute('CREATE TABLE t_{name} (id int)')", f"op.execute('DROP TABLE t_{name}')")


def rev(revision: str, down: str | tuple[str, ...] | None) -> Rev:
    return Rev(revision, down, *table(revision))


# Each tree is written in list order, so file names (0001_..., 0002_...) sort in list order:
# a home-made "parents first, ties by file name" order interleaves the branches, Alembic
# walks one branch to its end first.
TREES: dict[str, list[Rev]] = {
    "branch_and_merge": [rev("a", None), rev("zz1", "a"), rev("bb1", "a"), rev("zz2", "zz1"),
                         rev("bb2", "bb1"), rev("m", ("zz2", "bb2")), rev("c", "m")],
    "merge_of_a_merge": [rev("a", None), rev("l1", "a"), rev("r1", "a"), rev("x1", "a"),
                         rev("l2", "l1"), rev("m1", ("l2", "r1")), rev("x2", "x1"),
                         rev("m2", ("x2", "m1")), rev("t", "m2")],
    "three_way_merge": [rev("root", None), rev("c3", "root"), rev("c1", "root"),
                        rev("c2", "root"), rev("c1b", "c1"), rev("m", ("c1b", "c2", "c3"))],
    "two_roots_merged": [rev("p1", None), rev("q1", None), rev("p2", "p1"), rev("q2", "q1"),
                         rev("m", ("q2", "p2"))],
}


def plain_alembic(plugin_dir: Path) -> Any:
    from alembic.script import ScriptDirectory

    return ScriptDirectory(str(plugin_dir), version_locations=[str(plugin_dir / "versions")])


def alembic_upgrade_order(plugin_dir: Path, current: tuple[str, ...] = ()) -> list[str]:
    walk = plain_alembic(plugin_dir).iterate_revisions("heads", current, implicit_base=True)
    return [r.revision for r in reversed(list(walk))]


def status_json(run_cli: Any, url: str, root: Path) -> dict[str, Any]:
    result = run_cli("--database-url", url, "--migrations-dir", root, "status",
                     "--format", "json")
    assert result.returncode == 0, result.stderr
    [plugin] = json.loads(result.stdout)["plugins"]
    return dict(plugin)


@pytest.mark.parametrize("shape", sorted(TREES))
def test_status_lists_pending_in_alembics_order(shape: str, tmp_path: Path,
                                                 database_url: str, run_cli: Any) -> None:
    """On a fresh database and half-way up one branch, `status` lists what is pending in the
    order plain Alembic walks it — not parents-first-then-file-names."""
    root = tmp_path / "plugins"
    plugin_dir = write_plugin(root, "core", TREES[shape])
    expected = alembic_upgrade_order(plugin_dir)
    assert status_json(run_cli, database_url, root)["pending"] == expected
    # Half-way: up to the second revision Alembic would apply (on its first branch).
    settings = settings_for(database_url, root)
    runs.upgrade(settings, ["core"], to=expected[1])
    current = tuple(status_json(run_cli, database_url, root)["current"].split(","))
    assert status_json(run_cli, database_url, root)["pending"] == alembic_upgrade_order(
        plugin_dir, current)


@pytest.mark.parametrize("shape", sorted(TREES))
def test_upgrade_applies_in_the_order_status_showed(shape: str, tmp_path: Path,
                                                    database_url: str) -> None:
    """The order revisions are applied (their history rows) is the pending list `status`
    showed, which is plain Alembic's."""
    root = tmp_path / "plugins"
    plugin_dir = write_plugin(root, "core", TREES[shape])
    settings = settings_for(database_url, root)
    [item] = commands.status(settings).plan.plugins
    runs.upgrade(settings)
    applied = [row[0] for row in fetch(
        database_url, "SELECT revision FROM migrator.history WHERE direction = 'up' "
        "ORDER BY id")]
    assert list(item.pending) == applied == alembic_upgrade_order(plugin_dir)


@pytest.mark.parametrize("shape", sorted(TREES))
def test_history_lists_revisions_as_alembic_history_does(shape: str, tmp_path: Path,
                                                         run_cli: Any) -> None:
    """`history` (no database needed) lists the tree newest first in `alembic history`'s
    order (`ScriptDirectory.walk_revisions`)."""
    root = tmp_path / "plugins"
    plugin_dir = write_plugin(root, "core", TREES[shape])
    result = run_cli("--migrations-dir", root, "history", "--plugin", "core", "--format", "json")
    assert result.returncode == 0, result.stderr
    shown = [r["revision"] for r in json.loads(result.stdout)["revisions"]]
    assert shown == [r.revision for r in plain_alembic(plugin_dir).walk_revisions()]


def test_branch_labels_and_cross_branch_depends_on_follow_alembic(tmp_path: Path) -> None:
    """A labelled second root whose revision `depends_on` the main branch: the walk (and the
    history) are Alembic's, computed without importing a revision file."""
    root = tmp_path / "plugins"
    plugin_dir = write_plugin(root, "core", [rev("a1", None), rev("b1", None), rev("a2", "a1"),
                                             rev("b2", "b1"), rev("a3", "a2")])
    versions = plugin_dir / "versions"
    for path in versions.iterdir():
        text = path.read_text()
        if 'revision = "b1"' in text:
            text = text.replace("branch_labels = None", 'branch_labels = ("side",)')
        if 'revision = "b2"' in text:
            text = text.replace("depends_on = None", 'depends_on = "a3"')
        path.write_text(text)
    [plugin] = discover(root, entry_points=False)
    assert list(scripts.upgrade_order(plugin, ())) == alembic_upgrade_order(plugin_dir)
    assert list(scripts.history_order(plugin)) == [
        r.revision for r in plain_alembic(plugin_dir).walk_revisions()]


def test_a_depends_on_naming_nothing_is_a_tree_error(tmp_path: Path) -> None:
    """`depends_on` naming neither a revision nor a label: a `TreeError` naming it, not a
    KeyError from inside Alembic."""
    root = tmp_path / "plugins"
    plugin_dir = write_plugin(root, "core", [rev("a1", None), rev("a2", "a1")])
    second = next(p for p in (plugin_dir / "versions").iterdir() if "a2" in p.name)
    second.write_text(second.read_text().replace("depends_on = None", 'depends_on = "nope"'))
    [plugin] = discover(root, entry_points=False)
    with pytest.raises(TreeError, match="depends_on names 'nope'"):
        scripts.history_order(plugin)


def test_status_with_nothing_pending_imports_no_alembic(tmp_path: Path,
                                                        database_url: str) -> None:
    """Alembic's order is computed only when something is pending: `status` at head (the
    question every readiness probe asks) stays without alembic and SQLAlchemy."""
    root = tmp_path / "plugins"
    write_plugin(root, "core", TREES["branch_and_merge"])
    runs.upgrade(settings_for(database_url, root))
    probe = (
        "import sys\n"
        "from pathlib import Path\n"
        "sys.path.insert(0, 'tests')\n"
        "from helpers import settings_for\n"
        "from migrator import commands\n"
        f"report = commands.status(settings_for({database_url!r}, Path({str(root)!r})))\n"
        "assert report.plan.plugins[0].state == 'up_to_date', report\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('alembic', 'sqlalchemy')))\n")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            check=False, cwd=Path(__file__).resolve().parent.parent)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "[]"  # logs may come first


def test_sql_scripts_of_nested_merges_are_byte_identical_whatever_the_hash_seed(
        tmp_path: Path, run_cli: Any) -> None:
    """Alembic picks which parent of a merge to UPDATE (and which to DELETE), and which rows
    an unmerge INSERTs, through a `set`: with another branch still open, the choice followed
    the interpreter's string hashing. `upgrade --sql` and `downgrade --sql` are the same bytes
    under every PYTHONHASHSEED (warehouse's and Superset's merges showed it)."""
    root = tmp_path / "plugins"
    write_plugin(root, "core", [rev("a", None), rev("b1", "a"), rev("c1", "a"), rev("d1", "a"),
                                rev("m1", ("b1", "c1")), rev("m2", ("m1", "d1"))])
    outputs: dict[str, set[str]] = {"upgrade": set(), "downgrade": set()}
    for seed in range(8):
        env = {**os.environ, "PYTHONHASHSEED": str(seed), "MIGRATOR_MIGRATIONS_DIR": str(root),
               "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
        env = {k: v for k, v in env.items() if k != "MIGRATOR_DATABASE_URL"}
        up = run_cli("upgrade", "--sql", env=env)
        down = run_cli("downgrade", "--plugin", "core", "--to", "base", "--sql",
                       "--from", "m2", env=env)
        assert up.returncode == down.returncode == 0, up.stderr + down.stderr
        outputs["upgrade"].add(up.stdout)
        outputs["downgrade"].add(down.stdout)
    assert len(outputs["upgrade"]) == 1 and len(outputs["downgrade"]) == 1
