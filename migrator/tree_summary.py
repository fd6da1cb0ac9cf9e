"""The tree summary: what discovery derived from the migrations directory, kept in its revision
index (`migrator.revision_index`), so that an unchanged tree is rebuilt without listing a
`versions/` directory or reading a `plugin.toml`.

The revision index lets a run skip reading unchanged revision files, but a run over a hundred
plugins still lists every directory, parses (and imports a parser for) every `plugin.toml` and
checks every tree for duplicates and cycles: most of a no-op run once the files are indexed.
The summary is written beside the entries whenever the index is, for a tree that was read
cleanly (an error leaves the index unwritten), under `"tree"`:

    {"entries": [["core", [4096, 812, 1733450000123456789, 1733450000123456789],
                  [4096, 813, 1733450000123456789, 1733450000123456789]],
                 ["README.md", null, null], …],
     "plugins": {"core": {"toml": [31, 814, …] or null, "config": {"depends_on": [], …},
                          "files": ["0001_create_accounts.py", …]}}}

`entries`: every name in the migrations directory discovery looks at (all but the index itself
and editors' `.#` lock files), sorted, with the identity (size, inode, mtime_ns, ctime_ns,
through symlinks, as the index has them for files) of the entry and of its `versions`; null for
an entry that is not a directory, and for a `versions` that does not exist. `plugins`: for each
tree, its `plugin.toml`'s identity (null: there is none), the values read from it, validated,
and its revision file names, sorted.

It is used only when all of it still holds, else the whole migrations directory is read as
without it:
- The directory is listed and its names must be the recorded ones. Not its own identity: the
  index is written into it, and every write changes its mtime. A listing sees a plugin
  directory added, removed or renamed.
- Each entry's identity, and of each tree's `versions/` and `plugin.toml`, must be the recorded
  one: a directory's mtime changes when an entry in it is added, removed or renamed (a revision
  file, a `plugin.toml`, a replaced `versions/` or symlink); a `plugin.toml` edited in place
  changes its ctime. A name recorded as not a directory must still not be one. Identities are
  taken before what they vouch for is read, and recorded null when changed less than `RACY_NS`
  before the index was written, as for files: a later change in the same clock tick would keep
  them.
- Each revision file is trusted on its own entry's identity (`RevisionIndex.trusted`), as
  without a summary; one that is not means the tree is read.
- Everything is checked for shape before it is used, and discovery validates the values of
  `plugin.toml` again: a damaged or foreign summary is ignored, never an error. What is not
  repeated is the checks of each tree's revisions (unique ids, parents present, no cycle):
  they passed on exactly the entries written with the summary in the same file.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from migrator.revision_index import INDEX_NAME, RevisionIndex, identity
from migrator.revisions import RevisionFile

Status = os.stat_result | None
# Revision file names as discovery reads them: `*.py` but `__init__*` and editors' `.#*`.
_FILE_NAMES = re.compile(r"(?:(?!__init__|\.#)[^/\0\n]*\.py\n)*")


@dataclass(frozen=True, slots=True)
class SummarisedTree:
    """One plugin tree as the summary has it: discovery builds its `Plugin` from this."""

    name: str
    path: Path
    config: dict[str, Any]
    revisions: tuple[RevisionFile, ...]


@dataclass(slots=True)
class TreeRecord:
    """What reading the migrations directory saw, written as the summary (`as_json`)."""

    entries: list[tuple[str, Status, Status]] = field(default_factory=list)
    plugins: dict[str, tuple[Status, dict[str, Any], list[str]]] = field(default_factory=dict)

    def entry(self, name: str, directory: Status, versions: Status) -> None:
        """A name discovery looked at: `directory` None when it is not one, `versions` None
        when it has none."""
        if name != INDEX_NAME:
            self.entries.append((name, directory, versions))

    def plugin(self, name: str, toml: Status, config: dict[str, Any], files: list[str]) -> None:
        self.plugins[name] = (toml, config, files)

    def as_json(self, racy_from: int) -> Any:
        def known(status: Status) -> list[int | None] | None:
            return None if status is None else identity(status, racy_from)

        return {"entries": [[name, known(directory), known(versions)]
                            for name, directory, versions in self.entries],
                "plugins": {name: {"toml": known(toml), "config": config, "files": files}
                            for name, (toml, config, files) in self.plugins.items()}}


def version_tables_named(index: RevisionIndex, default_table: str) -> list[tuple[str, str]]:
    """The (schema, version table) pairs of the summarised trees, sorted, as the summary
    says, unchecked: a guess that lets a no-op run read the version tables while discovery
    checks the trees (`migrator.fast`), used only if discovery then finds exactly these."""
    tree = index.tree
    plugins = tree.get("plugins") if type(tree) is dict else None
    if type(plugins) is not dict:
        return []
    pairs = set()
    for name, facts in plugins.items():
        config = facts.get("config") if type(facts) is dict else None
        if type(config) is not dict:
            return []
        schema, table = config.get("schema", name), config.get("version_table", default_table)
        if type(schema) is not str or type(table) is not str:
            return []
        pairs.add((schema, table))
    return sorted(pairs)


def summarised_trees(index: RevisionIndex, migrations_dir: str) -> list[SummarisedTree] | None:
    """The trees of `migrations_dir`, sorted by name, as `index`'s summary has them when it
    still describes every one of them (see the module); None when it does not."""
    tree = index.tree
    if type(tree) is not dict:
        return None
    entries, plugins = tree.get("entries"), tree.get("plugins")
    if type(entries) is not list or type(plugins) is not dict:
        return None
    try:
        names = sorted(entry.name for entry in os.scandir(migrations_dir)
                       if entry.name != INDEX_NAME and not entry.name.startswith(".#"))
    except OSError:
        return None
    if len(names) != len(entries):
        return None
    found: list[SummarisedTree] = []
    for name, entry in zip(names, entries, strict=True):
        if type(entry) is not list or len(entry) != 3 or entry[0] != name:
            return None
        path = os.path.join(migrations_dir, name)
        status = _status(path)
        directory, versions = entry[1], entry[2]
        if status is None or (stat.S_ISDIR(status.st_mode) if directory is None
                              else not _same(directory, status)):
            return None
        if versions is not None:
            status = _status(path + "/versions")
            # Recorded as not a directory, a `versions` link's target may have become one.
            if (not _same(versions, status) or status is None
                    or (name not in plugins and stat.S_ISDIR(status.st_mode))):
                return None
        if name in plugins:
            if versions is None:
                return None
            summarised = _tree(index, path, name, plugins[name])
            if summarised is None:
                return None
            found.append(summarised)
    return found if len(found) == len(plugins) else None


def _tree(index: RevisionIndex, path: str, name: str, facts: Any) -> SummarisedTree | None:
    if type(facts) is not dict:
        return None
    toml, config, files = facts.get("toml"), facts.get("config"), facts.get("files")
    if type(config) is not dict or type(files) is not list:
        return None
    if toml is not None and not _same(toml, _status(path + "/plugin.toml")):
        return None
    try:
        listed = "\n".join(files)  # TypeError: not all strings
    except TypeError:
        return None
    # Names discovery would have read, sorted and each once, as listing gives them.
    if (not _FILE_NAMES.fullmatch(listed + "\n" if files else "")
            or not all(map(str.__lt__, files, files[1:]))):
        return None
    # The paths reading the tree gives: `./core` is `core` there (a Path's text).
    child = Path(path)
    revisions = index.trusted(f"{child}/versions/", name + "/versions/", files, name)
    return None if revisions is None else SummarisedTree(name, child, config, tuple(revisions))


def _status(path: str) -> Status:
    try:
        return os.stat(path)
    except OSError:
        return None


def _same(recorded: Any, status: Status) -> bool:
    """Whether `recorded` is the identity of `status` (never for a racy one: mtime null)."""
    return (status is not None and type(recorded) is list and len(recorded) == 4
            and recorded[2] == status.st_mtime_ns and recorded[3] == status.st_ctime_ns
            and recorded[0] == status.st_size and recorded[1] == status.st_ino)
