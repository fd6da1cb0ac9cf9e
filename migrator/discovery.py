"""Find plugin trees, read `plugin.toml`, and validate each tree into a `Plugin`.

Reading one revision file (ids without importing, the checksum) lives in `migrator.revisions`;
reading `plugin.toml` in `migrator.plugin_toml`; plugin order and reachability in
`migrator.graph`; all re-exported here for callers. Trees are read through the revision index
(`migrator.revision_index`), and an unchanged migrations directory is rebuilt from its tree
summary (`migrator.tree_summary`) without being read at all.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from migrator.errors import DependencyError, TreeError
from migrator.graph import (
    dependents_of,
    find_cycle,
    order_by_dependencies,
    reachable,
    with_dependencies,
)
from migrator.graph import heads as revision_heads
from migrator.plugin_toml import (
    NAME_PATTERN,
    PLUGIN_TOML_KEYS,
    read_plugin_toml,
    read_plugin_toml_status,
    validate_plugin_toml,
)
from migrator.revision_index import INDEX_NAME, RevisionIndex
from migrator.revisions import (
    REVISION_ID_PATTERN,
    RevisionFile,
    printable,
    require_regular_file,
    shown,
)
from migrator.tree_summary import SummarisedTree, TreeRecord, summarised_trees

__all__ = [
    "DEFAULT_VERSION_TABLE", "ENTRY_POINT_GROUP", "NAME_PATTERN", "PLUGIN_TOML_KEYS",
    "RESERVED_SCHEMAS", "REVISION_ID_PATTERN", "Plugin", "RevisionFile", "dependents_of",
    "discover", "index_path", "order_by_dependencies", "printable", "reachable", "read_plugin_toml",
    "require_regular_file", "validate_schema_name", "with_dependencies",
]

RESERVED_SCHEMAS = frozenset({"migrator", "information_schema"})  # and pg_*
PUBLIC_SCHEMA = "public"  # allowed for one plugin: an adopted Alembic app or the host
DEFAULT_VERSION_TABLE = "alembic_version"
ENTRY_POINT_GROUP = "migrator.plugins"


@dataclass(frozen=True, slots=True)
class Plugin:
    """A validated plugin tree: where it came from, its schema, dependencies, revisions and
    heads (several until a merge revision joins them)."""

    name: str
    schema: str
    path: Path
    source: str
    depends_on: tuple[str, ...]
    models: str | None
    description: str
    revisions: tuple[RevisionFile, ...]
    heads: tuple[str, ...]
    extensions: tuple[str, ...] = ()
    version_table: str = DEFAULT_VERSION_TABLE

    @property
    def head(self) -> str | None:
        """The head revision; None for an empty tree or one with several heads."""
        return self.heads[0] if len(self.heads) == 1 else None

    @property
    def versions_dir(self) -> Path:
        return self.path / "versions"

    def require_single_head(self) -> str | None:
        """The head (None for an empty tree); a tree with several heads cannot be migrated:
        `TreeError` listing them and saying how to merge."""
        if len(self.heads) > 1:
            raise TreeError(
                f"plugin {self.name!r} has {len(self.heads)} heads ({', '.join(self.heads)}); "
                f"create a merge revision: migrator merge --plugin {self.name} -m \"merge "
                "heads\"", plugin=self.name, path=str(self.path), heads=self.heads)
        return self.head

    def revision(self, revision_id: str) -> RevisionFile | None:
        for candidate in self.revisions:
            if candidate.revision == revision_id:
                return candidate
        return None

    @classmethod
    def from_directory(cls, path: Path, *, source: str, name: str | None = None,
                       index: RevisionIndex | None = None, prefix: str = "") -> Plugin:
        """Read and validate the tree at `path` (a directory holding `versions/`), through
        `index` when given (`prefix`: the tree's path from the index, ending with "/")."""
        return _read_plugin(path, source, name or path.name, index, prefix)[0]


def _read_plugin(path: Path, source: str, name: str, index: RevisionIndex | None,
                 prefix: str) -> tuple[Plugin, os.stat_result | None, dict[str, Any]]:
    """`Plugin.from_directory`, and what the tree summary records: the identity of
    `plugin.toml` (None: there is none) and its values."""
    if not NAME_PATTERN.match(name):
        raise TreeError(
            f"{printable(str(path))}: plugin name {shown(name)} must match "
            "^[a-z][a-z0-9_]{0,47}$ "
            "(lowercase letters, digits, underscores); rename the directory",
            plugin=name, path=str(path))
    toml = path / "plugin.toml"
    config, status = read_plugin_toml_status(toml, name)
    schema, depends_on = _schema_and_dependencies(config, str(toml), name)
    revisions = _read_revisions(path / "versions", name, index, prefix + "versions/")
    heads = _heads(revisions, name, path)
    return _plugin(name, path, source, config, schema, depends_on, revisions, heads), status, config


def _schema_and_dependencies(config: dict[str, Any], toml: str, name: str
                             ) -> tuple[str, tuple[str, ...]]:
    schema = config.get("schema", name)
    validate_schema_name(schema, where=toml, plugin=name)
    depends_on = tuple(config.get("depends_on", ()))
    if name in depends_on:
        raise DependencyError(f"{toml}: plugin {name!r} depends on itself; "
                              "remove it from depends_on", plugins=[name])
    return schema, depends_on


def _plugin(name: str, path: Path, source: str, config: dict[str, Any], schema: str,
            depends_on: tuple[str, ...], revisions: tuple[RevisionFile, ...],
            heads: tuple[str, ...]) -> Plugin:
    return Plugin(
        name=name, schema=schema, path=path, source=source, depends_on=depends_on,
        models=config.get("models"), description=config.get("description", ""),
        revisions=revisions, heads=heads, extensions=tuple(config.get("extensions", ())),
        version_table=config.get("version_table", DEFAULT_VERSION_TABLE))


def validate_schema_name(schema: str, *, where: str, plugin: str) -> None:
    if not NAME_PATTERN.match(schema) or schema in RESERVED_SCHEMAS or schema.startswith("pg_"):
        raise TreeError(
            f"{printable(where)}: schema {shown(schema)} is not allowed; use a lowercase "
            "identifier matching ^[a-z][a-z0-9_]{0,47}$ other than migrator, "
            "information_schema or pg_* (public: for one plugin only)",
            plugin=plugin, path=where)


def _read_revisions(versions: Path, plugin: str, index: RevisionIndex | None,
                    prefix: str) -> tuple[RevisionFile, ...]:
    # os.scandir and string paths: building a thousand Path objects costs more than reading
    # the files.
    try:
        files = sorted((entry.path, entry.name) for entry in os.scandir(versions)
                       if entry.name.endswith(".py")
                       and not entry.name.startswith(("__init__", ".#")))
    except OSError as exc:
        raise TreeError(f"{printable(str(versions))}: cannot list the versions directory "
                        f"({exc.strerror}); fix its permissions or remove it",
                        plugin=plugin, path=str(versions)) from None
    revisions = ([RevisionFile.read(file, plugin=plugin) for file, _ in files] if index is None
                 else [index.revision(file, prefix + name, plugin) for file, name in files])
    seen: dict[str, str] = {}
    for rev in revisions:
        if rev.revision in seen:
            raise TreeError(
                f"{rev.path}: revision id {rev.revision!r} is also used by {seen[rev.revision]}; "
                "give one of them a new id", plugin=plugin, path=rev.file)
        seen[rev.revision] = rev.file
    for rev in revisions:
        for parent in rev.down_revisions:
            if parent not in seen:
                raise TreeError(
                    f"{rev.path}: down_revision {parent!r} is not a revision of plugin "
                    f"{plugin!r}; point it at an existing revision of this tree",
                    plugin=plugin, path=rev.file)
    return tuple(revisions)


def _heads(revisions: tuple[RevisionFile, ...], plugin: str, path: Path) -> tuple[str, ...]:
    """The tree's heads (Alembic's: revisions no `down_revision` names), after refusing
    cycles and a tree without a base."""
    if not revisions:
        return ()
    parents = {r.revision: r.down_revisions for r in revisions}
    members = find_cycle({r.revision: (*r.down_revisions,
                                       *(d for d in r.depends_on if d in parents))
                          for r in revisions})
    if members is not None:
        raise TreeError(
            f"{path}: plugin {plugin!r} revisions form a cycle ("
            + " -> ".join([*members, members[0]]) + "); fix the down_revision lines",
            plugin=plugin, path=str(path))
    if not any(not rev.down_revisions for rev in revisions):
        raise TreeError(f"{path}: plugin {plugin!r} has no base revision (down_revision = None); "
                        "fix the down_revision lines", plugin=plugin, path=str(path))
    return revision_heads(parents)


def discover(migrations_dir: Path, *, entry_points: bool = True,
             rebuild_index: bool = False, index: RevisionIndex | None = None) -> list[Plugin]:
    """Every plugin from `migrations_dir` and the `migrator.plugins` entry points, validated
    and in dependency order, read through the revision indexes (`migrator.revision_index`;
    `index`: its index, already loaded); `rebuild_index` reads every file afresh and writes
    the indexes, failing when it cannot."""
    found: dict[str, Plugin] = {}
    if migrations_dir.is_dir():
        if index is None or rebuild_index:
            index = _index(str(migrations_dir), rebuild_index)
        for plugin in _from_summary(index, migrations_dir) or _read_trees(index, migrations_dir):
            found[plugin.name] = plugin
        _save(index, rebuild_index)
    if entry_points:
        for plugin in _entry_point_plugins(rebuild_index):
            if plugin.name in found:
                raise TreeError(
                    f"plugin {plugin.name!r} is found twice: {found[plugin.name].source} and "
                    f"{plugin.source}; remove or rename one of them", plugin=plugin.name)
            found[plugin.name] = plugin
    if not found and not migrations_dir.is_dir():
        from migrator.errors import ConfigError

        raise ConfigError(
            f"migrations directory {migrations_dir} does not exist and no installed package "
            "declares migrator.plugins; pass --migrations-dir or set MIGRATOR_MIGRATIONS_DIR")
    _check_schemas_unique(found.values())
    return order_by_dependencies(found)


def _from_summary(index: RevisionIndex, migrations_dir: Path) -> list[Plugin] | None:
    """The trees as the index's tree summary has them (`migrator.tree_summary`); None when
    it no longer describes them, or is damaged: values it holds that `plugin.toml` could
    not have held are refused as they would be there."""
    trees = summarised_trees(index, str(migrations_dir))
    if trees is None:
        return None
    try:
        return [_summarised_plugin(tree) for tree in trees]
    except (TreeError, DependencyError):
        return None


def _summarised_plugin(tree: SummarisedTree) -> Plugin:
    name, config, source = tree.name, tree.config, str(tree.path)
    toml = source + "/plugin.toml"
    if not NAME_PATTERN.match(name):
        raise TreeError(f"{name!r}: not a plugin name", plugin=name)
    if config:  # {} for a tree without plugin.toml, as most are
        validate_plugin_toml(config, toml, name, toml)
    schema, depends_on = _schema_and_dependencies(config, toml, name)
    # The revisions passed _read_revisions and _heads when the summary was written (the
    # module says why they are not checked again); heads are cheap to derive.
    heads = revision_heads({r.revision: r.down_revisions for r in tree.revisions})
    return _plugin(name, tree.path, source, config, schema, depends_on, tree.revisions, heads)


def _read_trees(index: RevisionIndex, migrations_dir: Path) -> list[Plugin]:
    """Every tree of `migrations_dir`, read; what was seen becomes the index's summary."""
    record = TreeRecord()
    plugins: list[Plugin] = []
    for child in _plugin_directories(migrations_dir, record):
        plugin, toml, config = _read_plugin(child, str(child), child.name, index,
                                            child.name + "/")
        record.plugin(plugin.name, toml, config, [r.filename for r in plugin.revisions])
        plugins.append(plugin)
    index.tree_record = record  # only for trees that were all read without an error
    return plugins


def _plugin_directories(migrations_dir: Path, record: TreeRecord) -> list[Path]:
    """The directories of `migrations_dir` holding `versions/`, sorted, each name recorded
    in `record`. A symlink there (or a `versions` link) that loops or leads nowhere is
    refused naming it, not skipped: the plugin it stands for would silently not run."""
    try:
        entries = sorted(os.scandir(migrations_dir), key=lambda e: e.name)
    except OSError as exc:
        raise TreeError(f"{printable(str(migrations_dir))}: cannot list the migrations "
                        f"directory ({exc.strerror})", path=str(migrations_dir)) from None
    children: list[Path] = []
    for entry in entries:
        if entry.name.startswith(".#"):  # an editor's lock file: a dangling link by design
            continue
        child = Path(entry.path)
        directory = _directory_status(child, entry.name)
        versions = None if directory is None else _status(child / "versions", entry.name)
        record.entry(entry.name, directory, versions)
        if versions is not None and stat.S_ISDIR(versions.st_mode):
            children.append(child)
    return children


def _directory_status(path: Path, plugin: str) -> os.stat_result | None:
    """`path`'s status when it is a directory, else None (see `_status`)."""
    status = _status(path, plugin)
    return status if status is not None and stat.S_ISDIR(status.st_mode) else None


def _status(path: Path, plugin: str) -> os.stat_result | None:
    """`path`'s status through symlinks, None when there is nothing; a broken or looping
    symlink is a `TreeError`."""
    try:
        # One stat through the links, not realpath's lstat of every component: a thousand
        # plugins made that a noticeable share of a no-op run.
        return os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            raise TreeError(f"{printable(str(path))}: a symlink to nothing "
                            f"({printable(os.readlink(path))}); fix or remove it",
                            plugin=plugin, path=str(path)) from None
        return None
    except OSError as exc:
        reason = "a symlink loop" if exc.errno == errno.ELOOP else exc.strerror
        raise TreeError(f"{printable(str(path))}: cannot read the directory ({reason}); fix "
                        "or remove it", plugin=plugin, path=str(path)) from None


def _entry_point_plugins(rebuild_index: bool) -> Iterable[Plugin]:
    from importlib.metadata import entry_points
    from importlib.util import find_spec

    for entry in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        where = f"entry point {entry.name} = {entry.value}"
        try:
            spec = find_spec(entry.value)
        except (ImportError, ValueError) as exc:
            raise TreeError(f"{where}: cannot find module ({exc}); fix the package's entry point",
                            plugin=entry.name) from None
        if spec is None or (spec.origin is None and not spec.submodule_search_locations):
            raise TreeError(f"{where}: module not found; fix the package's entry point",
                            plugin=entry.name)
        locations = list(spec.submodule_search_locations or [])
        directory = Path(locations[0]) if locations else Path(str(spec.origin)).parent
        if not (directory / "versions").is_dir():
            raise TreeError(f"{where}: {directory} has no versions/ folder", plugin=entry.name)
        index = _index(str(directory), rebuild_index)
        yield Plugin.from_directory(directory, source=where, name=entry.name, index=index)
        _save(index, rebuild_index)


def index_path(plugin: Plugin, migrations_dir: Path) -> Path:
    """Where `plugin`'s revision index is: in the migrations directory for its trees, in the
    package directory for a tree an entry point names."""
    if plugin.path.parent == migrations_dir:
        return migrations_dir / INDEX_NAME
    return plugin.path / INDEX_NAME


def _index(directory: str, rebuild: bool) -> RevisionIndex:
    return RevisionIndex.empty(directory) if rebuild else RevisionIndex.load(directory)


def _save(index: RevisionIndex, rebuild: bool) -> None:
    if rebuild:
        index.save_or_refuse()
    else:
        index.save_if_behind()


def _check_schemas_unique(plugins: Iterable[Plugin]) -> None:
    owners: dict[str, Plugin] = {}
    for plugin in plugins:
        other = owners.get(plugin.schema)
        if other is not None:
            only = (" (public is for one plugin only: the host application or an adopted "
                    "Alembic app)" if plugin.schema == PUBLIC_SCHEMA else "")
            raise TreeError(
                f"plugins {other.name!r} and {plugin.name!r} both use schema {plugin.schema!r}"
                f"{only}; set a different `schema` in one plugin.toml", plugin=plugin.name)
        owners[plugin.schema] = plugin
