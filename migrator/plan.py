"""What is pending, as data: `Plan.build(plugins, current)` needs no database.

`upgrade`, `--dry-run`, `status` and `wait` all read the same `Plan`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from migrator.discovery import Plugin
from migrator.errors import UnknownRevision, UsageError
from migrator.graph import reachable


class PluginState(StrEnum):
    """Where a plugin stands, as `status` reports it."""

    UP_TO_DATE = "up_to_date"
    PENDING = "pending"
    UNKNOWN_REVISION = "unknown_revision"
    ORPHANED = "orphaned"
    MULTIPLE_HEADS = "multiple_heads"


UP_TO_DATE = PluginState.UP_TO_DATE
PENDING = PluginState.PENDING
UNKNOWN_REVISION = PluginState.UNKNOWN_REVISION
ORPHANED = PluginState.ORPHANED
MULTIPLE_HEADS = PluginState.MULTIPLE_HEADS


def ancestry(plugin: Plugin, revisions: Sequence[str]) -> set[str]:
    """`revisions` and every revision they descend from, or depend on (Alembic's
    `depends_on`, where it names a revision of the tree)."""
    return reachable(revisions, _parents(plugin))


def _parents(plugin: Plugin) -> dict[str, tuple[str, ...]]:
    known = {rev.revision for rev in plugin.revisions}
    return {rev.revision: (*rev.down_revisions,
                           *(d for d in rev.depends_on if d in known and d != rev.revision))
            for rev in plugin.revisions}


def oldest_first(plugin: Plugin, revisions: set[str]) -> tuple[str, ...]:
    """`revisions` parents before children, ties by file name: a cheap stand-in, without
    alembic, for deciding *whether* something is pending. Where the order is shown
    (`status`, `history`), `scripts.upgrade_order` / `history_order` give Alembic's own."""
    from graphlib import TopologicalSorter

    by_id = {rev.revision: rev for rev in plugin.revisions}
    parents = _parents(plugin)
    sorter: TopologicalSorter[str] = TopologicalSorter(
        {r: [p for p in parents[r] if p in revisions] for r in revisions})
    sorter.prepare()
    ordered: list[str] = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready(), key=lambda r: by_id[r].filename)
        ordered.extend(ready)
        sorter.done(*ready)
    return tuple(ordered)


def resolve_revision(plugin: Plugin, text: str) -> str:
    """A revision id of `plugin`'s tree from a full id, a unique prefix, or `head`."""
    if text == "head" and plugin.head:
        return plugin.head
    if plugin.revision(text):
        return text
    matches = [r.revision for r in plugin.revisions if r.revision.startswith(text)]
    if len(matches) == 1 and len(text) >= 4:
        return matches[0]
    raise UnknownRevision(
        f"revision {text!r} is not in the tree of plugin {plugin.name!r} "
        f"({plugin.versions_dir}){known_revisions_hint(plugin)}"
        + "; run: migrator history --plugin " + plugin.name,
        plugin=plugin.name, revision=text)


def known_revisions_hint(plugin: Plugin, shown: int = 10) -> str:
    """The newest revisions by id (enough to spot a typo), and how many more there are."""
    if not plugin.revisions:
        return "; the tree has no revisions yet"
    newest = [r.revision for r in plugin.revisions[-shown:]]
    more = len(plugin.revisions) - len(newest)
    return (f"; known revisions: {', '.join(newest)}"
            + (f" (and {more} older)" if more else ""))


@dataclass(frozen=True, slots=True)
class PluginPlan:
    """One plugin: where the database is, where the tree goes, and what is pending."""

    plugin: Plugin
    current: tuple[str, ...]
    target: str | None
    pending: tuple[str, ...]
    state: PluginState

    @property
    def name(self) -> str:
        return self.plugin.name

    @property
    def current_label(self) -> str | None:
        return ",".join(self.current) if self.current else None

    @classmethod
    def build(cls, plugin: Plugin, current: tuple[str, ...], target: str | None = None
              ) -> PluginPlan:
        goal = target or plugin.head
        known = {rev.revision for rev in plugin.revisions}
        if any(rev not in known for rev in current):
            return cls(plugin, current, goal, (), UNKNOWN_REVISION)
        if goal is None and len(plugin.heads) > 1:
            # Shown, not run: what reaching every head would apply.
            pending = oldest_first(
                plugin, ancestry(plugin, plugin.heads) - ancestry(plugin, current))
            return cls(plugin, current, None, pending, MULTIPLE_HEADS)
        if goal is None or current == (goal,):
            # At the goal (every pod start, usually): nothing to walk.
            return cls(plugin, current, goal, (), UP_TO_DATE)
        done = ancestry(plugin, current)
        if target is not None and target in done and target not in current:
            raise UsageError(
                f"plugin {plugin.name!r} is already past revision {target} "
                f"(at {','.join(current)}); to go back run: migrator downgrade "
                f"--plugin {plugin.name} --to {target}")
        pending = oldest_first(plugin, ancestry(plugin, [goal]) - done)
        return cls(plugin, current, goal, pending, PENDING if pending else UP_TO_DATE)


@dataclass(frozen=True, slots=True)
class Plan:
    """Every selected plugin's `PluginPlan`, in dependency order."""

    plugins: tuple[PluginPlan, ...]

    @classmethod
    def build(cls, plugins: Sequence[Plugin], current: Mapping[str, tuple[str, ...]],
              *, targets: Mapping[str, str] | None = None) -> Plan:
        """`current` maps schema → revisions in its version table (missing: nothing applied)."""
        targets = targets or {}
        return cls(tuple(
            PluginPlan.build(p, tuple(current.get(p.schema, ())), targets.get(p.name))
            for p in plugins))

    def reordered(self, order: Callable[[PluginPlan], tuple[str, ...]]) -> Plan:
        """This plan with every non-empty pending list replaced by `order(item)`: Alembic's
        own walk, supplied by a layer that may import alembic (this one must not)."""
        return Plan(tuple(dataclasses.replace(p, pending=order(p)) if p.pending else p
                          for p in self.plugins))

    @property
    def pending(self) -> tuple[PluginPlan, ...]:
        return tuple(p for p in self.plugins if p.state == PENDING)

    @property
    def unknown(self) -> tuple[PluginPlan, ...]:
        return tuple(p for p in self.plugins if p.state == UNKNOWN_REVISION)

    @property
    def multiple_heads(self) -> tuple[PluginPlan, ...]:
        return tuple(p for p in self.plugins if p.state == MULTIPLE_HEADS)

    def require_known_revisions(self) -> None:
        """Refuse to run when a version table holds a revision no tree has."""
        for item in self.unknown:
            raise UnknownRevision(
                f"plugin {item.name!r}: the database is at revision {item.current_label}, which "
                f"is not in {item.plugin.versions_dir}; restore the missing revision file or "
                f"run: migrator stamp --plugin {item.name} <revision>",
                plugin=item.name, revision=item.current_label or "")
