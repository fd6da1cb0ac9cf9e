"""The revision index (migrator.revision_index): what discovery reads from each revision file,
kept in <migrations-dir>/.migrator-index.json. It is used only while a file's size, inode,
mtime_ns and ctime_ns are unchanged; any edit, however it keeps size or mtime, is seen; a stale,
corrupt or foreign index is ignored; a read-only tree works and gets nothing written; and the
no-op fast path, given a fresh index, opens no revision file at all."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import fetch
from treebuilder import Rev, write_plugin

from migrator import discovery
from migrator.revision_index import FIELDS, INDEX_NAME, RACY_NS

MIGRATOR = [sys.executable, "-m", "migrator"]

# Runs in a subprocess: an audit hook sees every open (os.open, io.open) of a revision file.
PROBE = """
import json, os, sys
from pathlib import Path
root, mode = sys.argv[1], sys.argv[2]
opened = []
def hook(event, args):
    if event == "open" and isinstance(args[0], str) and args[0].startswith(root) \\
            and args[0].endswith(".py"):
        opened.append(os.path.basename(args[0]))
sys.addaudithook(hook)
if mode == "fast":
    sys.argv = ["migrator", "upgrade"]
    from migrator.fast import _answered_nothing_to_do
    result = _answered_nothing_to_do()
else:
    from migrator import discovery
    result = {p.name: [r.revision for r in p.revisions]
              for p in discovery.discover(Path(root), entry_points=False)}
print(json.dumps({"result": result, "opened": sorted(opened)}))
"""


def probe(root: Path, mode: str = "discover", env: dict[str, str] | None = None
          ) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-c", PROBE, str(root), mode], env=env,
                          capture_output=True, text=True, check=True, timeout=120)
    return dict(json.loads(done.stdout.splitlines()[-1]))


def entries(root: Path) -> dict[str, Any]:
    return dict(json.loads((root / INDEX_NAME).read_text())["files"])


def field(entry: list[Any], name: str) -> Any:
    return entry[FIELDS.index(name)]


def index_settled(root: Path) -> dict[str, Any]:
    """`migrator index` (in process) until every entry is trusted on its identity: a file
    changed in the clock tick the index is written in is not, until it is older."""
    deadline = time.monotonic() + 60
    while True:
        discovery.discover(root, entry_points=False, rebuild_index=True)
        found = entries(root)
        if all(field(entry, "mtime_ns") is not None for entry in found.values()):
            return found
        assert time.monotonic() < deadline, f"entries stay racy: {found}"
        time.sleep(0.01)


def truth(root: Path) -> list[discovery.Plugin]:
    """The trees read without any index."""
    return [discovery.Plugin.from_directory(p.path, source=p.source)
            for p in discovery.discover(root, entry_points=False)]


@pytest.fixture
def platform_root(tmp_path: Path) -> Path:
    root = tmp_path / "plugins"
    write_plugin(root, "core", [Rev("c1", None), Rev("c2", "c1")])
    write_plugin(root, "lean", [Rev("l1", None), Rev("l2", "l1")], toml='depends_on = ["core"]')
    return root


def test_an_indexed_discovery_equals_reading_the_files(platform_root: Path) -> None:
    """Every field discovery keeps (ids, parents, labels, dependencies, message, path) is the
    same through the index as read from the files."""
    found = index_settled(platform_root)
    assert sorted(found) == ["core/versions/0001_c1.py", "core/versions/0002_c2.py",
                             "lean/versions/0001_l1.py", "lean/versions/0002_l2.py"]
    assert discovery.discover(platform_root, entry_points=False) == truth(platform_root)
    assert probe(platform_root)["opened"] == []  # and it came from the index


def rewrite(path: Path, old: str, new: str, *, how: str) -> None:
    """Replace `old` by `new` in the file at `path`, the way `how` says."""
    before = path.stat()
    data = path.read_bytes().replace(old.encode(), new.encode())
    if how == "replace":  # a new inode (editors, git checkout), same size and mtime
        spare = path.with_name(path.name + ".new")
        spare.write_bytes(data)
        os.replace(spare, path)
    else:  # in place: same inode
        with path.open("r+b") as handle:
            handle.write(data)
            handle.truncate()
    if how != "in-place":  # put the mtime back to the nanosecond
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
        assert path.stat().st_mtime_ns == before.st_mtime_ns


@pytest.mark.parametrize(("how", "new"), [
    ("in-place", "m2"),  # same size, a later mtime
    ("in-place-same-mtime", "m2"),  # same size, same inode, mtime put back: ctime differs
    ("in-place-same-mtime", "m2xx"),  # a different size, mtime put back
    ("replace", "m2"),  # same size and mtime, another inode
])
def test_an_edited_revision_is_seen(platform_root: Path, how: str, new: str) -> None:
    """A revision id changed after indexing is what discovery reports, however the edit kept
    size, mtime or inode; the index is rewritten with it."""
    index_settled(platform_root)
    rewrite(platform_root / "lean" / "versions" / "0002_l2.py", '"l2"', f'"{new}"', how=how)
    seen = probe(platform_root)
    assert seen["result"]["lean"] == ["l1", new]
    assert seen["opened"] == ["0002_l2.py"]  # the others still come from the index
    assert field(entries(platform_root)["lean/versions/0002_l2.py"], "revision") == new
    assert discovery.discover(platform_root, entry_points=False) == truth(platform_root)


def test_a_file_changed_just_before_indexing_is_not_trusted_on_identity(
        platform_root: Path) -> None:
    """A file changed less than 2 s before the index was built (a second edit in the same
    clock tick would keep its timestamps) is read again by the next run, not trusted."""
    index_settled(platform_root)
    path = platform_root / "core" / "versions" / "0002_c2.py"
    rewrite(path, '"c2"', '"d2"', how="in-place")
    discovery.discover(platform_root, entry_points=False, rebuild_index=True)
    if time.time_ns() - path.stat().st_ctime_ns < RACY_NS:  # else this machine stalled 2 s
        assert field(entries(platform_root)["core/versions/0002_c2.py"], "mtime_ns") is None
        assert probe(platform_root)["opened"] == ["0002_c2.py"]


def test_a_touched_file_is_read_again_but_not_parsed_or_rewritten(platform_root: Path) -> None:
    """An identity change alone (an image layer extracted on another node) costs a read: the
    sha256 matches, so the entry's fields are used and the index is left as it is."""
    index_settled(platform_root)
    path = platform_root / "core" / "versions" / "0001_c1.py"
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns - 10**9))
    written = (platform_root / INDEX_NAME).read_bytes()
    assert probe(platform_root)["opened"] == ["0001_c1.py"]
    assert (platform_root / INDEX_NAME).read_bytes() == written


def test_a_stale_index_from_another_tree_is_not_trusted(platform_root: Path,
                                                          tmp_path: Path) -> None:
    """An index copied from another checkout (same names, other ids) changes nothing."""
    other = tmp_path / "other"
    write_plugin(other, "core", [Rev("x1", None), Rev("x2", "x1")])
    write_plugin(other, "lean", [Rev("y1", None), Rev("y2", "y1")], toml='depends_on = ["core"]')
    index_settled(other)
    shutil.copy2(other / INDEX_NAME, platform_root / INDEX_NAME)
    assert probe(platform_root)["result"] == {"core": ["c1", "c2"], "lean": ["l1", "l2"]}
    assert discovery.discover(platform_root, entry_points=False) == truth(platform_root)


@pytest.mark.parametrize("content", [
    b"", b"{", b"\xff\xfe not utf-8", b"[]", b'{"format": "migrator-index/0", "files": {}}',
    b'{"format": "migrator-index/2", "files": []}', b"[" * 100_000,
    # The previous format, entries as objects: rebuilt, not read.
    b'{"format": "migrator-index/1", "files": {"core/versions/0001_c1.py": {"size": 1}}}',
])
def test_a_corrupt_index_is_ignored_and_replaced(platform_root: Path, content: bytes) -> None:
    """Garbage, another format or nesting too deep for the parser: no entry, no error; the
    run writes a good index in its place."""
    (platform_root / INDEX_NAME).write_bytes(content)
    assert discovery.discover(platform_root, entry_points=False) == truth(platform_root)
    assert len(entries(platform_root)) == 4


def test_damaged_entries_are_ignored(platform_root: Path) -> None:
    """An entry whose identity matches but whose fields could not come from a revision file
    (an id Alembic refuses, a wrong type) is not used: the file is parsed."""
    found = index_settled(platform_root)
    found["lean/versions/0002_l2.py"][FIELDS.index("revision")] = "l2; drop"
    found["core/versions/0002_c2.py"][FIELDS.index("down_revisions")] = "c1"
    (platform_root / INDEX_NAME).write_text(json.dumps(
        {"format": "migrator-index/2", "files": found}))
    seen = probe(platform_root)
    assert seen["result"] == {"core": ["c1", "c2"], "lean": ["l1", "l2"]}
    assert seen["opened"] == ["0002_c2.py", "0002_l2.py"]


@pytest.mark.parametrize("kind", ["directory", "fifo"])
def test_an_index_that_is_not_a_file_is_ignored(platform_root: Path, kind: str) -> None:
    """A directory or a FIFO named .migrator-index.json: ignored, never waited on."""
    index = platform_root / INDEX_NAME
    if kind == "directory":
        index.mkdir()
    else:
        os.mkfifo(index)
    assert probe(platform_root)["result"] == {"core": ["c1", "c2"], "lean": ["l1", "l2"]}


def read_only(path: Path, argv: list[str]) -> list[str]:
    """`argv` run with `path` read-only: as root (whom chmod does not stop) a read-only bind
    mount in a user namespace, as anyone else the caller's chmod 555."""
    if os.geteuid() != 0:
        return argv
    # A mount namespace of our own, as root proper where allowed (a user namespace would cost
    # root its access to a server socket another user owns, as the embedded server's is).
    for unshare in (["unshare", "--mount"], ["unshare", "--map-root-user", "--mount"]):
        if shutil.which("unshare") is not None and subprocess.run(
                [*unshare, "true"], check=False, capture_output=True).returncode == 0:
            return [*unshare, "sh", "-c",
                    'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" "$1" && shift '
                    '&& exec "$@"', "sh", str(path), *argv]
    pytest.skip("running as root without mount namespaces: cannot make a tree read-only")


def listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def chmod_tree(root: Path, mode: int) -> None:
    for directory in [root, *(p for p in root.rglob("*") if p.is_dir())]:
        directory.chmod(mode)


def test_a_read_only_tree_works_and_nothing_is_written(
    platform_root: Path, database_url: str, cli_env: dict[str, str],
) -> None:
    """On a read-only tree (chmod 555, or a read-only mount for root) without an index,
    `plugins`, `upgrade` and the no-op `upgrade` succeed, and nothing is written; `migrator
    index` fails naming the path."""
    env = {**cli_env, "MIGRATOR_DATABASE_URL": database_url,
           "MIGRATOR_MIGRATIONS_DIR": str(platform_root)}
    before = listing(platform_root)
    chmod_tree(platform_root, 0o555)
    try:
        for args in (["plugins"], ["upgrade"], ["upgrade"]):
            done = subprocess.run(read_only(platform_root, [*MIGRATOR, *args]), env=env,
                                  capture_output=True, text=True, check=False, timeout=120)
            assert done.returncode == 0, done.stderr
            assert listing(platform_root) == before
        refused = subprocess.run(read_only(platform_root, [*MIGRATOR, "index"]), env=env,
                                 capture_output=True, text=True, check=False, timeout=120)
        assert refused.returncode == 2
        assert f"{platform_root / INDEX_NAME}: cannot write the revision index" in refused.stderr
    finally:
        chmod_tree(platform_root, 0o755)
    assert listing(platform_root) == before


def test_the_index_command_and_the_fast_path(
    platform_root: Path, database_url: str, cli_env: dict[str, str], run_cli: Any,
) -> None:
    """`migrator index` writes the index the no-op fast path then answers from without opening
    a revision file; an in-place edit of the head's id (same size, mtime put back) is seen:
    the database's revision is then unknown and the fast path hands over to the full CLI."""
    env = {**cli_env, "MIGRATOR_DATABASE_URL": database_url,
           "MIGRATOR_MIGRATIONS_DIR": str(platform_root)}
    assert run_cli("upgrade", env=env).returncode == 0
    (platform_root / INDEX_NAME).unlink()
    written = run_cli("index", env=env)
    assert written.returncode == 0, written.stderr
    # run_cli's working directory is tmp_path: the path is shown from there.
    assert written.stdout.strip() == "wrote plugins/.migrator-index.json: 4 revisions of 2 plugins"
    index_settled(platform_root)

    assert probe(platform_root, "fast", env) == {"result": True, "opened": []}
    rewrite(platform_root / "lean" / "versions" / "0002_l2.py", '"l2"', '"m2"',
            how="in-place-same-mtime")
    assert probe(platform_root, "fast", env) == {"result": False, "opened": ["0002_l2.py"]}
    status = run_cli("status", "--format", "json", env=env)
    lean = next(p for p in json.loads(status.stdout)["plugins"] if p["name"] == "lean")
    assert (lean["current"], lean["head"], lean["state"]) == ("l2", "m2", "unknown_revision")


def test_an_entry_point_tree_gets_an_index_in_its_package(
    platform_root: Path, tree: Any, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A tree an installed package names through a `migrator.plugins` entry point (in
    site-packages, not the migrations directory) has its own index in the package directory,
    keyed from there; `index_path` says where each plugin's index is."""
    site = tree("disc_entry_point")
    info = site / "extplug_dist-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: extplug-dist\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[migrator.plugins]\nextplug = extplug_pkg\n")
    monkeypatch.syspath_prepend(str(site))
    found = discovery.discover(platform_root, rebuild_index=True)
    assert {p.name: discovery.index_path(p, platform_root) for p in found} == {
        "core": platform_root / INDEX_NAME, "lean": platform_root / INDEX_NAME,
        "extplug": site / "extplug_pkg" / INDEX_NAME}
    assert sorted(entries(site / "extplug_pkg")) == sorted(
        f"versions/{p.name}" for p in (site / "extplug_pkg" / "versions").glob("*.py")
        if p.name != "__init__.py")
    assert "extplug_pkg" not in json.dumps(entries(platform_root))
    assert discovery.discover(platform_root) == found


def test_history_rows_take_the_indexed_checksum_but_check_computes_its_own(
    platform_root: Path, database_url: str, cli_env: dict[str, str], run_cli: Any,
) -> None:
    """Applying a revision records the checksum the index holds for exactly its bytes (no
    tokenizing at apply time). `check` never trusts it: an index entry whose checksum is
    wrong makes `check` report the revision, it cannot hide an edit."""
    from migrator.revisions import normalised_checksum

    env = {**cli_env, "MIGRATOR_DATABASE_URL": database_url,
           "MIGRATOR_MIGRATIONS_DIR": str(platform_root)}
    found = index_settled(platform_root)
    for name, entry in found.items():
        assert field(entry, "checksum") == normalised_checksum(
            (platform_root / name).read_bytes())
    document = json.loads((platform_root / INDEX_NAME).read_text())
    document["files"]["core/versions/0001_c1.py"][FIELDS.index("checksum")] = "f" * 64  # lies
    (platform_root / INDEX_NAME).write_text(json.dumps(document))

    assert run_cli("upgrade", env=env).returncode == 0
    recorded = dict(fetch(database_url, "SELECT revision, checksum FROM migrator.history "
                          "WHERE outcome = 'applied'"))
    assert recorded["c1"] == "f" * 64  # taken from the index, not computed
    assert recorded["c2"] == normalised_checksum(
        (platform_root / "core" / "versions" / "0002_c2.py").read_bytes())
    checked = run_cli("check", "--format", "json", env=env)
    assert checked.returncode == 5
    assert "c1" in checked.stdout and "c2" not in checked.stdout
