"""The tree summary (migrator.tree_summary): an unchanged, indexed migrations directory is
rebuilt from its index into exactly the plugins reading the files gives, without listing a
versions/ directory or reading a plugin.toml; any change to the trees makes discovery read
them again; a racy, damaged or foreign summary is never trusted; and a tree that does not
discover cleanly never gets one."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from test_revision_index import read_only, rewrite
from treebuilder import Rev, write_plugin

from migrator import discovery
from migrator.errors import MigratorError
from migrator.revision_index import INDEX_NAME, RACY_NS, RevisionIndex

TREES = Path(__file__).parent / "trees"


def settle(root: Path) -> None:
    """Wait until nothing below `root` changed in the last 2 s (the racy window): a
    summary written before then is, rightly, not trusted."""
    newest = max(max(p.stat().st_mtime_ns, p.stat().st_ctime_ns)
                 for p in [root, *root.rglob("*")])
    while time.time_ns() < newest + RACY_NS + 50_000_000:
        time.sleep(0.05)


def index(root: Path) -> None:
    """`migrator index`, once the trees are old enough for the summary to be trusted."""
    settle(root)
    discovery.discover(root, entry_points=False, rebuild_index=True)
    assert summarised(root) is not None


def summarised(root: Path) -> list[discovery.Plugin] | None:
    """The plugins as the index's summary has them, by name; None when discovery would not
    use it."""
    return discovery._from_summary(RevisionIndex.load(str(root)), root)


def truth(root: Path) -> list[discovery.Plugin]:
    """The trees read from their files without any index (and writing none), by name."""
    found = [discovery.Plugin.from_directory(child, source=str(child))
             for child in sorted(root.iterdir()) if (child / "versions").is_dir()]
    discovery._check_schemas_unique(found)
    discovery.order_by_dependencies({p.name: p for p in found})
    return found


def discovered(root: Path) -> list[discovery.Plugin]:
    return sorted(discovery.discover(root, entry_points=False), key=lambda p: p.name)


def summary(root: Path) -> dict[str, Any]:
    return dict(json.loads((root / INDEX_NAME).read_text())["tree"])


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """Trees of every shape the summary records: a plugin.toml with values, none at all, a
    merge, no revision yet, a symlinked plugin directory, and names in the directory that are
    no plugins."""
    root = tmp_path / "plugins"
    write_plugin(root, "core", [Rev("c1", None), Rev("c2", "c1")],
                 toml='description = "core one"\nschema = "core_s"')
    write_plugin(root, "lean", [Rev("l1", None), Rev("l2", "l1"), Rev("l3", "l1"),
                                Rev("l4", ("l2", "l3"))], toml='depends_on = ["core"]')
    (write_plugin(root, "bare", [Rev("b1", None)]) / "plugin.toml").unlink()
    write_plugin(root, "empty", [])
    write_plugin(tmp_path / "elsewhere" / "a", "linked", [Rev("a1", None)])
    write_plugin(tmp_path / "elsewhere" / "b", "linked", [Rev("b1x", None), Rev("b2x", "b1x")])
    (root / "linked").symlink_to(tmp_path / "elsewhere" / "a" / "linked")
    (root / "README.md").write_text("not a plugin\n")
    (root / "notes").mkdir()  # a directory without versions/
    index(root)
    return root


def test_the_summary_rebuilds_exactly_what_reading_the_files_gives(root: Path) -> None:
    """Field by field, the plugins from the summary equal those read without any index, and
    discover returns them."""
    found = summarised(root)
    assert found is not None and found == truth(root)
    assert [p.name for p in found] == ["bare", "core", "empty", "lean", "linked"]
    assert discovered(root) == truth(root)


def test_a_relative_migrations_directory_gives_the_same_paths(
        root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Through the summary, a plugin's path, source and revision files are spelled as
    reading the trees spells them, also for a migrations directory given as `.`."""
    monkeypatch.chdir(root)
    found = summarised(Path("."))
    assert found is not None
    assert found == truth(Path("."))
    assert found[0].source == "bare" and found[0].revisions[0].file == "bare/versions/0001_b1.py"


def test_the_repository_trees_summarise_to_what_reading_them_gives(tmp_path: Path) -> None:
    """Every scenario tree in tests/trees that discovers cleanly (and the bench fleet's
    shape, when this checkout has one) gives through its summary exactly the plugins read
    from its files."""
    trees = [shutil.copytree(TREES / name, tmp_path / name, symlinks=True)
             for name in sorted(os.listdir(TREES))]
    fleet = Path(__file__).parent.parent / "bench" / "work" / "fleet-100x10"
    if fleet.is_dir():
        trees.append(shutil.copytree(fleet, tmp_path / "fleet", symlinks=True))
    clean = 0
    for copied in map(Path, trees):
        try:
            discovery.discover(copied, entry_points=False)
            expected = truth(copied)
        except MigratorError:
            continue  # a scenario of an error: see test_errors_are_reported_as_without_one
        index(copied)
        assert summarised(copied) == expected, copied.name
        assert discovered(copied) == expected
        clean += 1
    assert clean >= 20


def replace_link(link: Path, target: Path) -> None:
    """Point `link` at `target` the way `ln -sfn` does: a new link renamed over the old."""
    spare = link.with_name(link.name + ".new")
    spare.symlink_to(target)
    os.replace(spare, link)


def add_revision(versions: Path, name: str, revision: str, down: str) -> None:
    """A revision file written beside the others, leaving them untouched."""
    (versions / name).write_text(f'"""added"""\nrevision = "{revision}"\n'
                                 f'down_revision = "{down}"\n')


def replace_versions(plugin: Path) -> None:
    """A copy of versions/ without its last revision renamed over it (a checkout)."""
    shutil.copytree(plugin / "versions", plugin / "versions.new", copy_function=shutil.copy2)
    max((plugin / "versions.new").glob("*.py")).unlink()
    os.rename(plugin / "versions", plugin / "versions.old")
    os.rename(plugin / "versions.new", plugin / "versions")


def versions_to_file(plugin: Path) -> None:
    shutil.rmtree(plugin / "versions")
    (plugin / "versions").write_text("")


CHANGES: dict[str, Callable[[Path], object]] = {
    "revision edited in place, size and mtime kept": lambda root: rewrite(
        root / "lean" / "versions" / "0004_l4.py", '"l4"', '"m4"', how="in-place-same-mtime"),
    "revision added": lambda root: add_revision(
        root / "core" / "versions", "0003_c3.py", "c3", "c2"),
    "revision removed": lambda root: (root / "lean" / "versions" / "0004_l4.py").unlink(),
    "revision renamed": lambda root: os.rename(root / "core" / "versions" / "0002_c2.py",
                                               root / "core" / "versions" / "0009_c2.py"),
    "plugin.toml edited in place, size and mtime kept": lambda root: rewrite(
        root / "core" / "plugin.toml", "core one", "core two", how="in-place-same-mtime"),
    "plugin.toml added": lambda root: (root / "bare" / "plugin.toml").write_text(
        'description = "now described"\n'),
    "plugin.toml removed": lambda root: (root / "lean" / "plugin.toml").unlink(),
    "plugin directory added": lambda root: write_plugin(root, "extra", [Rev("e1", None)]),
    "plugin directory removed": lambda root: shutil.rmtree(root / "bare"),
    "symlinked plugin directory repointed": lambda root: replace_link(
        root / "linked", root.parent / "elsewhere" / "b" / "linked"),
    "versions directory replaced": lambda root: replace_versions(root / "lean"),
    "versions directory becomes a file": lambda root: versions_to_file(root / "bare"),
    "a directory becomes a plugin": lambda root: write_plugin(root, "notes", [Rev("n1", None)]),
}


@pytest.mark.parametrize("change", CHANGES)
def test_a_change_is_seen(root: Path, change: str) -> None:
    """After any change to the trees the summary is not used: discovery reads them again and
    returns what they now hold."""
    before = truth(root)
    CHANGES[change](root)
    assert summarised(root) is None
    after = truth(root)
    assert after != before  # the change is one discovery sees
    assert discovered(root) == after


def test_a_tree_changed_just_before_indexing_is_not_trusted(root: Path) -> None:
    """A directory changed less than 2 s before the index was written is recorded with a
    null mtime: the summary is not used until an index is written once the change is older."""
    write_plugin(root, "extra", [Rev("e1", None)])
    discovery.discover(root, entry_points=False, rebuild_index=True)
    if time.time_ns() - (root / "extra").stat().st_ctime_ns < RACY_NS:  # else we stalled 2 s
        [extra] = [e for e in summary(root)["entries"] if e[0] == "extra"]
        assert extra[1][2] is None  # its mtime
        assert summarised(root) is None
    index(root)
    assert summarised(root) == truth(root)


def foreign(root: Path) -> None:
    """The index of another checkout with the same names: its identities are not these."""
    other = root.parent / "other"
    shutil.copytree(root, other, symlinks=True)
    index(other)
    shutil.copy2(other / INDEX_NAME, root / INDEX_NAME)


DAMAGE: dict[str, Callable[[dict[str, Any]], object]] = {
    "emptied": lambda tree: tree.clear(),
    "entries not a list": lambda tree: tree.update(entries={}),
    "an entry missing": lambda tree: tree["entries"].pop(0),
    "an entry renamed": lambda tree: tree["entries"][1].__setitem__(0, "zzz"),
    "an identity of the wrong shape": lambda tree: tree["entries"][1].__setitem__(1, [1, 2]),
    "a plugin missing": lambda tree: tree["plugins"].pop("core"),
    "a plugin.toml value it could not hold": lambda tree: tree["plugins"]["core"][
        "config"].update(schema="pg_catalog"),
    "an unknown plugin.toml key": lambda tree: tree["plugins"]["core"]["config"].update(x=1),
    "a plugin depending on itself": lambda tree: tree["plugins"]["lean"][
        "config"].update(depends_on=["lean"]),
    "a file outside versions/": lambda tree: tree["plugins"]["core"]["files"].__setitem__(
        0, "../plugin.toml.py"),
    "files out of order": lambda tree: tree["plugins"]["core"]["files"].reverse(),
    "a file that is no string": lambda tree: tree["plugins"]["core"]["files"].append(7),
}


@pytest.mark.parametrize("damage", [*DAMAGE, "foreign"])
def test_a_damaged_or_foreign_summary_is_ignored(root: Path, damage: str) -> None:
    """A summary of the wrong shape, holding what a plugin.toml could not, naming files
    discovery would not read, or copied from another checkout: not used, never an error."""
    if damage == "foreign":
        foreign(root)
    else:
        document = json.loads((root / INDEX_NAME).read_text())
        DAMAGE[damage](document["tree"])
        (root / INDEX_NAME).write_text(json.dumps(document))
    assert summarised(root) is None
    assert discovered(root) == truth(root)


@pytest.mark.parametrize("scenario", ["bad_toml_invalid", "bad_duplicate_revision",
                                      "bad_revision_cycle", "bad_self_dependency"])
def test_errors_are_reported_as_without_one(tree: Any, scenario: str) -> None:
    """A tree that does not discover cleanly gets no summary, and its error is the one
    reading it without an index gives, also when the error appears after indexing."""
    broken = tree(scenario)
    with pytest.raises(MigratorError) as without:
        discovery.discover(broken, entry_points=False)
    (broken / INDEX_NAME).unlink(missing_ok=True)
    with pytest.raises(MigratorError) as indexing:
        discovery.discover(broken, entry_points=False, rebuild_index=True)
    assert str(indexing.value) == str(without.value)
    assert not (broken / INDEX_NAME).exists() or "tree" not in json.loads(
        (broken / INDEX_NAME).read_text())


@pytest.mark.parametrize("scenario", ["bad_schema_shared", "bad_dependency_cycle",
                                      "bad_depends_unknown"])
def test_errors_between_plugins_are_reported_through_the_summary(
        tree: Any, scenario: str) -> None:
    """Errors between trees that each read cleanly (a shared schema, a dependency cycle, an
    unknown dependency) are checked on every run, from a summary too: reported as without an
    index."""
    broken = tree(scenario)
    with pytest.raises(MigratorError) as without:
        discovery.discover(broken, entry_points=False)
    (broken / INDEX_NAME).unlink()
    settle(broken)
    with pytest.raises(MigratorError):
        discovery.discover(broken, entry_points=False, rebuild_index=True)
    assert summarised(broken) is not None
    with pytest.raises(MigratorError) as through:
        discovery.discover(broken, entry_points=False)
    assert str(through.value) == str(without.value)


ERRORS: dict[str, Callable[[Path], object]] = {
    "duplicate revision id": lambda root: add_revision(
        root / "core" / "versions", "0003_again.py", "c2", "c1"),
    "bad plugin.toml": lambda root: (root / "bare" / "plugin.toml").write_text("schema = 7\n"),
    "a cycle": lambda root: rewrite(root / "lean" / "versions" / "0001_l1.py",
                                    "down_revision = None", "down_revision = 'l4'",
                                    how="in-place"),
    "a plugin.toml edited in place into an error": lambda root: rewrite(
        root / "core" / "plugin.toml", 'schema = "core_s"', 'schema = "pg_x__"',
        how="in-place-same-mtime"),
}


@pytest.mark.parametrize("error", ERRORS)
def test_an_error_introduced_after_indexing_is_reported(root: Path, error: str) -> None:
    """A duplicate revision id, a bad plugin.toml or a cycle brought into an indexed tree is
    reported exactly as reading the files without an index reports it."""
    ERRORS[error](root)
    with pytest.raises(MigratorError) as indexed:
        discovery.discover(root, entry_points=False)
    (root / INDEX_NAME).unlink()
    with pytest.raises(MigratorError) as unindexed:
        discovery.discover(root, entry_points=False)
    assert str(indexed.value) == str(unindexed.value)


PROBE = """
import json, sys
from pathlib import Path
root = sys.argv[1]
listed = []
sys.addaudithook(lambda event, args: listed.append(str(args[0]))
                 if event == "os.scandir" and str(args[0]).startswith(root) else None)
from migrator import discovery
found = discovery.discover(Path(root), entry_points=False)
print(json.dumps({"plugins": [p.name for p in found], "listed": listed,
                  "tomllib": "tomllib" in sys.modules}))
"""


def test_a_read_only_tree_is_rebuilt_from_its_summary_and_nothing_is_written(
        root: Path) -> None:
    """On a read-only tree (chmod 555, or a read-only mount for root) the summary is used:
    only the migrations directory is listed, no plugin.toml parser is loaded, and nothing is
    written."""
    directories = [p for p in root.rglob("*") if p.is_dir()]
    for directory in directories:  # a chmod changes ctimes: the index is written after it
        directory.chmod(0o555)
    index(root)
    root.chmod(0o555)  # its identity is not recorded: it holds the index
    before = {p: p.stat().st_mtime_ns for p in [root, *root.rglob("*")]}
    try:
        done = subprocess.run(read_only(root, [sys.executable, "-c", PROBE, str(root)]),
                              capture_output=True, text=True, check=True, timeout=120)
    finally:
        for directory in [root, *directories]:
            directory.chmod(0o755)
    seen = json.loads(done.stdout.splitlines()[-1])
    assert seen == {"plugins": ["bare", "core", "empty", "linked", "lean"],
                    "listed": [str(root)],
                    "tomllib": False}
    assert {p: p.stat().st_mtime_ns for p in [root, *root.rglob("*")]} == before
