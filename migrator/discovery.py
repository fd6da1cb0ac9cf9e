"""Find plugin trees, read `plugin.toml` and revision ids, and validate them.

Revision ids are read with a regular expression, not by importing the file: a run with
nothing pending must import no revision module (and neither alembic nor SQLAlchemy).
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from migrator.errors import DependencyError, TreeError
from migrator.graph import order_by_dependencies
from migrator.revisions import REVISION_ID_PATTERN, RevisionFile, printable, shown_value

__all__ = ["REVISION_ID_PATTERN", "Plugin", "RevisionFile", "discover", "printable"]

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,47}\Z")  # \Z: `$` would allow a final newline
RESERVED_SCHEMAS = frozenset({"public", "migrator", "information_schema"})
PLUGIN_TOML_KEYS = ("schema", "depends_on", "models", "description")
ENTRY_POINT_GROUP = "migrator.plugins"

@dataclass(frozen=True, slots=True)
class Plugin:
    """A validated plugin tree: where it came from, its schema, dependencies and revisions."""

    name: str
    schema: str
    path: Path
    source: str
    depends_on: tuple[str, ...]
    models: str | None
    description: str
    revisions: tuple[RevisionFile, ...]
    head: str | None

    @property
    def versions_dir(self) -> Path:
        return self.path / "versions"

    def revision(self, revision_id: str) -> RevisionFile | None:
        for candidate in self.revisions:
            if candidate.revision == revision_id:
                return candidate
        return None

    @classmethod
    def from_directory(cls, path: Path, *, source: str, name: str | None = None) -> Plugin:
        """Read and validate the tree at `path` (a directory holding `versions/`)."""
        name = name or path.name
        if not NAME_PATTERN.match(name):
            raise TreeError(
                f"{printable(str(path))}: plugin name {shown_value(name)} must match "
                "^[a-z][a-z0-9_]{0,47}$ "
                "(lowercase letters, digits, underscores); rename the directory",
                plugin=name, path=str(path))
        config = read_plugin_toml(path / "plugin.toml", name)
        schema = config.get("schema", name)
        validate_schema_name(schema, where=f"{path / 'plugin.toml'}", plugin=name)
        depends_on = tuple(config.get("depends_on", ()))
        if name in depends_on:
            raise DependencyError(f"{path / 'plugin.toml'}: plugin {name!r} depends on itself; "
                                  "remove it from depends_on", plugins=[name])
        revisions = _read_revisions(path / "versions", name)
        return cls(
            name=name, schema=schema, path=path, source=source, depends_on=depends_on,
            models=config.get("models"), description=config.get("description", ""),
            revisions=revisions, head=_single_head(revisions, name, path),
        )


def validate_schema_name(schema: str, *, where: str, plugin: str) -> None:
    if not NAME_PATTERN.match(schema) or schema in RESERVED_SCHEMAS or schema.startswith("pg_"):
        raise TreeError(
            f"{where}: schema {shown_value(schema)} is not allowed; use a lowercase identifier "
            "matching ^[a-z][a-z0-9_]{0,47}$ other than public, migrator, information_schema "
            "or pg_*",
            plugin=plugin, path=where)


def require_regular_file(path: str, *, plugin: str, what: str) -> None:
    """Refuse anything but a regular file (after symlinks): a symlink loop, a dangling link,
    a FIFO (opening it would hang the run), a socket, a device or a directory."""
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise TreeError(f"{path}: cannot read {what} ({exc.strerror}); fix or remove it",
                        plugin=plugin, path=path) from None
    if not stat.S_ISREG(mode):
        kind = ("a directory" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode)
                else "a socket" if stat.S_ISSOCK(mode) else "a device")
        raise TreeError(f"{path}: the {what} is {kind}, not a regular file; remove it or "
                        "replace it with a file", plugin=plugin, path=path)


def read_plugin_toml(path: Path, plugin: str) -> dict[str, Any]:
    if not os.path.lexists(path):
        return {}
    require_regular_file(str(path), plugin=plugin, what="plugin.toml")
    import tomllib

    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise TreeError(f"{path}: invalid TOML ({shown_value(str(exc), quote=False)}); fix "
                        "the file", plugin=plugin, path=str(path)) from None
    except RecursionError:  # tomllib recurses into nested arrays and tables
        raise TreeError(f"{path}: invalid TOML (nested too deeply); fix the file",
                        plugin=plugin, path=str(path)) from None
    except OSError as exc:
        raise TreeError(f"{path}: cannot read plugin.toml ({exc.strerror}); fix or remove it",
                        plugin=plugin, path=str(path)) from None
    unknown = sorted(set(data) - set(PLUGIN_TOML_KEYS))
    if unknown:
        raise TreeError(
            f"{path}: unknown key {shown_value(unknown[0])}; allowed keys are "
            + ", ".join(PLUGIN_TOML_KEYS),
            plugin=plugin, path=str(path))
    for key in ("schema", "models", "description"):
        if key in data and not isinstance(data[key], str):
            raise TreeError(f"{path}: {key} must be a string, got {type(data[key]).__name__}",
                            plugin=plugin, path=str(path))
    if "models" in data and not re.match(r"^[\w.]+:[\w.]+\Z", data["models"]):
        raise TreeError(f"{path}: models {shown_value(data['models'])} must look like "
                        "'package.module:name'",
                        plugin=plugin, path=str(path))
    depends = data.get("depends_on", [])
    if not isinstance(depends, list) or not all(isinstance(d, str) for d in depends):
        raise TreeError(f"{path}: depends_on must be a list of plugin names, like [\"core\"]",
                        plugin=plugin, path=str(path))
    for dependency in depends:
        if not NAME_PATTERN.match(dependency):
            raise TreeError(f"{path}: depends_on entry {shown_value(dependency)} is not a valid "
                            "plugin name",
                            plugin=plugin, path=str(path))
    return data


def _read_revisions(versions: Path, plugin: str) -> tuple[RevisionFile, ...]:
    # os.scandir and string paths: building a thousand Path objects costs more than reading
    # the files.
    files = sorted(entry.path for entry in os.scandir(versions)
                   if entry.name.endswith(".py")
                   and not entry.name.startswith(("__init__", ".#")))
    for file in files:
        require_regular_file(file, plugin=plugin, what="revision file")
    revisions = [RevisionFile.read(file, plugin=plugin) for file in files]
    seen: dict[str, str] = {}
    for rev in revisions:
        if rev.revision in seen:
            raise TreeError(
                f"{rev.path}: revision id {rev.revision!r} is also used by {seen[rev.revision]}; "
                "give one of them a new id", plugin=plugin, path=str(rev.path))
        seen[rev.revision] = rev.file
    for rev in revisions:
        for parent in rev.down_revisions:
            if parent not in seen:
                raise TreeError(
                    f"{rev.path}: down_revision {parent!r} is not a revision of plugin "
                    f"{plugin!r}; point it at an existing revision of this tree",
                    plugin=plugin, path=str(rev.path))
    return tuple(revisions)


def _single_head(revisions: tuple[RevisionFile, ...], plugin: str, path: Path) -> str | None:
    if not revisions:
        return None
    from graphlib import CycleError, TopologicalSorter

    try:
        TopologicalSorter({r.revision: r.down_revisions for r in revisions}).prepare()
    except CycleError as exc:
        members = list(dict.fromkeys(exc.args[1]))
        raise TreeError(
            f"{path}: plugin {plugin!r} revisions form a cycle ("
            + " -> ".join([*members, members[0]]) + "); fix the down_revision lines",
            plugin=plugin, path=str(path)) from None
    parents = {p for rev in revisions for p in rev.down_revisions}
    heads = sorted(rev.revision for rev in revisions if rev.revision not in parents)
    if len(heads) != 1:
        if not heads:
            raise TreeError(f"{path}: plugin {plugin!r} revisions form a cycle (no head); "
                            "fix the down_revision lines", plugin=plugin, path=str(path))
        raise TreeError(
            f"plugin {plugin!r} has {len(heads)} heads ({', '.join(heads)}); create a merge "
            f"revision: migrator revision --plugin {plugin} -m merge",
            plugin=plugin, path=str(path), heads=heads)
    if not any(not rev.down_revisions for rev in revisions):
        raise TreeError(f"{path}: plugin {plugin!r} has no base revision (down_revision = None); "
                        "fix the down_revision lines", plugin=plugin, path=str(path))
    return heads[0]


def discover(migrations_dir: Path, *, entry_points: bool = True) -> list[Plugin]:
    """Every plugin from `migrations_dir` and the `migrator.plugins` entry points, validated
    and in dependency order."""
    found: dict[str, Plugin] = {}
    if migrations_dir.is_dir():
        for name in sorted(entry.name for entry in os.scandir(migrations_dir) if entry.is_dir()):
            child = migrations_dir / name
            if os.path.isdir(child / "versions"):
                plugin = Plugin.from_directory(child, source=str(child))
                found[plugin.name] = plugin
    if entry_points:
        for plugin in _entry_point_plugins():
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


def _entry_point_plugins() -> Iterable[Plugin]:
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
        yield Plugin.from_directory(directory, source=where, name=entry.name)


def _check_schemas_unique(plugins: Iterable[Plugin]) -> None:
    owners: dict[str, Plugin] = {}
    for plugin in plugins:
        other = owners.get(plugin.schema)
        if other is not None:
            raise TreeError(
                f"plugins {other.name!r} and {plugin.name!r} both use schema {plugin.schema!r}; "
                "set a different `schema` in one plugin.toml", plugin=plugin.name)
        owners[plugin.schema] = plugin
