"""Find plugin trees, read `plugin.toml` and revision ids, and validate them.

Revision ids are read with a regular expression, not by importing the file: a run with
nothing pending must import no revision module (and neither alembic nor SQLAlchemy).
"""

from __future__ import annotations

import ast
import os
import re
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from migrator.errors import DependencyError, TreeError

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,47}\Z")  # \Z: `$` would allow a final newline
REVISION_ID_PATTERN = re.compile(r"^[A-Za-z0-9_]{1,32}\Z")  # Alembic refuses - + @ :
RESERVED_SCHEMAS = frozenset({"public", "migrator", "information_schema"})
PLUGIN_TOML_KEYS = ("schema", "depends_on", "models", "description")
ENTRY_POINT_GROUP = "migrator.plugins"

# Read from bytes: decoding a thousand files costs more than the search itself.
_REVISION_LINE = re.compile(
    rb"^revision\s*(?::[^=\n]+)?=\s*(?P<q>['\"])(?P<id>[^'\"\n]*)(?P=q)\s*(?:#.*)?$", re.M
)
_DOWN_REVISION_LINE = re.compile(
    rb"^down_revision\s*(?::[^=\n]+)?=\s*(?P<value>[^#\n]+?)\s*(?:#.*)?$", re.M
)
_SIMPLE_VALUE = re.compile(rb"^(?:None|'([^'\\]*)'|\"([^\"\\]*)\")$")
_DOCSTRING_FIRST_LINE = re.compile(
    rb'^\s*(?:"""|\'\'\')\s*(?P<line>[^\n]*?)\s*(?:"""|\'\'\')?\s*$', re.M)


@dataclass(frozen=True, slots=True)
class RevisionFile:
    """One revision file of a tree: its id, parents, path and message."""

    revision: str
    down_revisions: tuple[str, ...]
    file: str  # a string, not a Path: building a thousand Paths costs more than reading them
    message: str

    @property
    def path(self) -> Path:
        return Path(self.file)

    @property
    def filename(self) -> str:
        return os.path.basename(self.file)

    @classmethod
    def read(cls, file: str, *, plugin: str) -> RevisionFile:
        path = file
        try:
            with open(path, "rb") as handle:
                data = handle.read()
        except OSError as exc:
            raise TreeError(f"{path}: cannot read revision file ({exc.strerror}); fix or remove it",
                            plugin=plugin, path=str(path)) from None
        revision_match = _REVISION_LINE.search(data)
        down_match = _DOWN_REVISION_LINE.search(data)
        down: Any = _NOT_LITERAL
        if revision_match is not None and down_match is not None:
            revision: Any = revision_match.group("id").decode("utf-8", "replace")
            down = _value(down_match.group("value"))
        if down is _NOT_LITERAL:
            # Unusual layout (a tuple over several lines, annotations, ...): read the syntax tree.
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                raise TreeError(f"{path}: not UTF-8 text; save the revision file as UTF-8",
                                plugin=plugin, path=str(path)) from None
            revision, down = _assignments_from_ast(text, path, plugin)
        if not isinstance(revision, str) or not REVISION_ID_PATTERN.match(revision):
            raise TreeError(
                f"{path}: revision id {_shown(revision)} must be 1-32 letters, digits or '_'; "
                "fix the `revision = ...` line",
                plugin=plugin, path=str(path))
        down_revisions = _as_revision_tuple(down, path, plugin)
        docstring = _DOCSTRING_FIRST_LINE.search(data, 0, 500)
        message = docstring.group("line").decode("utf-8", "replace") if docstring else ""
        return cls(revision=revision, down_revisions=down_revisions, file=file,
                   message=message)


def _value(raw: bytes) -> Any:
    """A down_revision value: None and plain strings directly, anything else via literal_eval."""
    simple = _SIMPLE_VALUE.match(raw)
    if simple is not None:
        text = simple.group(1) if simple.group(1) is not None else simple.group(2)
        return None if text is None else text.decode("utf-8", "replace")
    return _literal(raw.decode("utf-8", "replace"))


_NOT_LITERAL = object()


def printable(text: str) -> str:
    """`text` with control and other unprintable characters escaped: a directory named with
    a newline must not break a one-line message."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _shown(value: Any, *, limit: int = 80, quote: bool = True) -> str:
    """`value` for an error message: repr'd, and cut short (a hostile file may hold megabytes)."""
    text = repr(value) if quote else str(value)
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"


def _literal(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, TypeError, SyntaxError, RecursionError, MemoryError):
        return _NOT_LITERAL  # MemoryError, RecursionError: nested too deeply for the parser


def _assignments_from_ast(text: str, path: str, plugin: str) -> tuple[Any, Any]:
    """Fallback for unusual formatting: find the two assignments in the module's syntax tree."""
    try:
        module = ast.parse(text, filename=str(path))
    except SyntaxError as exc:
        raise TreeError(
            f"{path}:{exc.lineno}: syntax error in revision file ({exc.msg}); fix the file",
            plugin=plugin, path=str(path)) from None
    except (RecursionError, MemoryError):
        raise TreeError(f"{path}: the revision file is nested too deeply to parse; fix the file",
                        plugin=plugin, path=str(path)) from None
    found: dict[str, Any] = {}
    for node in module.body:
        targets: list[ast.expr] = []
        value: ast.expr | None = None
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        for target in targets:
            if isinstance(target, ast.Name) and target.id in ("revision", "down_revision"):
                try:
                    found[target.id] = ast.literal_eval(value) if value is not None else None
                except (ValueError, TypeError, RecursionError, MemoryError):
                    found[target.id] = _NOT_LITERAL
    for name in ("revision", "down_revision"):
        if name not in found:
            raise TreeError(
                f"{path}: no `{name} = ...` assignment; every revision file needs "
                "`revision` and `down_revision` (None for the first revision)",
                plugin=plugin, path=str(path))
        if found[name] is _NOT_LITERAL:
            raise TreeError(f"{path}: `{name}` must be a literal string (or None / a tuple of "
                            "strings), not an expression", plugin=plugin, path=str(path))
    return found["revision"], found["down_revision"]


def _as_revision_tuple(value: Any, path: str, plugin: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = (value,)
    if isinstance(value, tuple | list) and all(
        isinstance(v, str) and REVISION_ID_PATTERN.match(v) for v in value
    ):
        return tuple(value)
    raise TreeError(
        f"{path}: down_revision {_shown(value)} must be None, a revision id or a tuple of ids",
        plugin=plugin, path=str(path))


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
                f"{printable(str(path))}: plugin name {_shown(name)} must match "
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
            f"{where}: schema {_shown(schema)} is not allowed; use a lowercase identifier matching "
            "^[a-z][a-z0-9_]{0,47}$ other than public, migrator, information_schema or pg_*",
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
        raise TreeError(f"{path}: invalid TOML ({_shown(str(exc), quote=False)}); fix the file",
                        plugin=plugin, path=str(path)) from None
    except RecursionError:  # tomllib recurses into nested arrays and tables
        raise TreeError(f"{path}: invalid TOML (nested too deeply); fix the file",
                        plugin=plugin, path=str(path)) from None
    except OSError as exc:
        raise TreeError(f"{path}: cannot read plugin.toml ({exc.strerror}); fix or remove it",
                        plugin=plugin, path=str(path)) from None
    unknown = sorted(set(data) - set(PLUGIN_TOML_KEYS))
    if unknown:
        raise TreeError(
            f"{path}: unknown key {_shown(unknown[0])}; allowed keys are "
            + ", ".join(PLUGIN_TOML_KEYS),
            plugin=plugin, path=str(path))
    for key in ("schema", "models", "description"):
        if key in data and not isinstance(data[key], str):
            raise TreeError(f"{path}: {key} must be a string, got {type(data[key]).__name__}",
                            plugin=plugin, path=str(path))
    if "models" in data and not re.match(r"^[\w.]+:[\w.]+\Z", data["models"]):
        raise TreeError(f"{path}: models {_shown(data['models'])} must look like "
                        "'package.module:name'",
                        plugin=plugin, path=str(path))
    depends = data.get("depends_on", [])
    if not isinstance(depends, list) or not all(isinstance(d, str) for d in depends):
        raise TreeError(f"{path}: depends_on must be a list of plugin names, like [\"core\"]",
                        plugin=plugin, path=str(path))
    for dependency in depends:
        if not NAME_PATTERN.match(dependency):
            raise TreeError(f"{path}: depends_on entry {_shown(dependency)} is not a valid "
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


def order_by_dependencies(plugins: Mapping[str, Plugin]) -> list[Plugin]:
    """Plugins in dependency order (graphlib); ties broken by name so the order is stable."""
    from graphlib import CycleError, TopologicalSorter

    for plugin in plugins.values():
        for dependency in plugin.depends_on:
            if dependency not in plugins:
                raise DependencyError(
                    f"plugin {plugin.name!r} depends on {dependency!r}, which is not installed "
                    f"(plugin.toml of {plugin.source}); install it or remove it from depends_on",
                    plugins=[plugin.name, dependency])
    sorter: TopologicalSorter[str] = TopologicalSorter(
        {name: plugins[name].depends_on for name in sorted(plugins)})
    try:
        sorter.prepare()
    except CycleError as exc:
        members = list(dict.fromkeys(exc.args[1]))
        raise DependencyError(
            "dependency cycle between plugins: " + " -> ".join([*members, members[0]])
            + "; remove one depends_on entry to break it", plugins=members) from None
    ordered: list[Plugin] = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready())
        ordered.extend(plugins[name] for name in ready)
        sorter.done(*ready)
    return ordered


def reachable(start: Iterable[str], edges: Mapping[str, Iterable[str]]) -> set[str]:
    """`start` and everything reachable from it along `edges` (a plugin's dependencies, a
    revision's parents)."""
    seen: set[str] = set()
    stack = list(start)
    while stack:
        node = stack.pop()
        if node not in seen:
            seen.add(node)
            stack.extend(edges.get(node, ()))
    return seen


def with_dependencies(plugins: list[Plugin], names: Iterable[str]) -> list[Plugin]:
    """The named plugins and everything they depend on, in dependency order."""
    wanted = reachable(names, {p.name: p.depends_on for p in plugins})
    return [p for p in plugins if p.name in wanted]


def dependents_of(plugins: list[Plugin], name: str) -> list[Plugin]:
    """The plugins that depend on `name`, directly or not, in dependency order."""
    depended_by: dict[str, list[str]] = {}
    for candidate in plugins:
        for dependency in candidate.depends_on:
            depended_by.setdefault(dependency, []).append(candidate.name)
    names = reachable([name], depended_by) - {name}
    return [p for p in plugins if p.name in names]
