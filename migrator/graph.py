"""The plugin graph: dependency order (graphlib) and reachability. Pure: no files, no
database."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol, TypeVar

from migrator.errors import DependencyError


class Node(Protocol):
    """What the graph needs of a plugin."""

    @property
    def name(self) -> str: ...

    @property
    def depends_on(self) -> tuple[str, ...]: ...

    @property
    def source(self) -> str: ...


Plugin = TypeVar("Plugin", bound=Node)


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
