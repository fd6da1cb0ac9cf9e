"""Looking before leaping: `upgrade --sql` / `downgrade --sql` (offline, no database),
`--dry-run` (read-only) and `lint` — each a plain function, settings in, data out."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from migrator import graph
from migrator.commands import (
    check_downgrade_reachable,
    connection,
    downgrade_destination,
    plugin_named,
    plugins,
    read_plan,
    refuse_without_cascade,
    require_database,
    require_single_heads,
    select,
)
from migrator.config import Settings
from migrator.errors import FindingsReported, UsageError
from migrator.plan import Plan, PluginPlan, resolve_revision


def upgrade_sql(settings: Settings, names: Sequence[str] = (), *, start: str | None = None,
                to: str | None = None) -> list[Any]:
    """`upgrade --sql`: each named plugin's SQL (every plugin's when none is named) from base,
    or `start`, to its head, or `to`, in dependency order, rendered offline: no database.
    Returns `sql_output.RenderedPlugin`s."""
    from migrator.sql_output import render_upgrade

    if (start is not None or to is not None) and len(names) != 1:
        raise UsageError("--from and --to need exactly one --plugin (a revision belongs to one "
                         "plugin's tree)")
    found = plugins(settings)
    selected = select(found, names, with_dependencies=False)
    require_single_heads(selected)
    current: dict[str, tuple[str, ...]] = {}
    if start is not None and start != "base":
        current[selected[0].schema] = (resolve_revision(selected[0], start),)
    targets = {selected[0].name: resolve_revision(selected[0], to)} if to is not None else {}
    plan = Plan.build(selected, current, targets=targets)
    return [render_upgrade(item, lock_timeout=settings.lock_timeout) for item in plan.plugins]


def downgrade_sql(settings: Settings, name: str, to: str, *, start: str | None = None,
                  cascade: bool = False) -> list[Any]:
    """`downgrade --sql`: the SQL that reverts `name` from its head (or `start`) to `to`,
    rendered offline; with `cascade`, first the plugins that depend on it, from their heads
    to base, dependents first (offline, they are assumed at head). Returns
    `sql_output.RenderedPlugin`s."""
    from migrator.sql_output import render_downgrade

    found = plugins(settings)
    plugin = plugin_named(found, name)
    dependents = graph.dependents_of(found, name) if cascade else []
    require_single_heads([*dependents, plugin])
    destination = downgrade_destination(plugin, to)
    begin = plugin.head if start is None else resolve_revision(plugin, start)
    item = PluginPlan.build(plugin, (begin,) if begin else ())
    check_downgrade_reachable(item, destination)
    return [*(render_downgrade(p, start=(p.head,) if p.head else (), destination="base",
                               lock_timeout=settings.lock_timeout)
              for p in reversed(dependents)),
            render_downgrade(plugin, start=item.current, destination=destination,
                             lock_timeout=settings.lock_timeout)]


def upgrade_dry_run(settings: Settings, names: Sequence[str] = (), *,
                    to: str | None = None) -> Any:
    """`upgrade --dry-run`: what `upgrade` would run now, read in a READ ONLY transaction;
    creates and changes nothing. Returns a `review.Review`."""
    from migrator import review

    if to is not None and len(names) != 1:
        raise UsageError(
            "--to needs exactly one --plugin (a revision belongs to one plugin's tree)")
    found = plugins(settings)
    selected = select(found, names, with_dependencies=True)
    require_single_heads(selected)
    targets = ({names[0]: resolve_revision(plugin_named(found, names[0]), to)}
               if to is not None else {})
    with review.read_only(settings) as conn:
        plan = read_plan(conn, selected, targets)
        plan.require_known_revisions()
        return review.review_upgrade(conn, plan, lock_timeout=settings.lock_timeout)


def downgrade_dry_run(settings: Settings, name: str, to: str, *, cascade: bool = False) -> Any:
    """`downgrade --dry-run`: what `downgrade` (with `cascade`, also its applied dependents'
    reverts, first) would revert now, read-only. Returns a `review.Review`."""
    from migrator import review

    found = plugins(settings)
    plugin = plugin_named(found, name)
    require_single_heads([*graph.dependents_of(found, name), plugin] if cascade else [plugin])
    destination = downgrade_destination(plugin, to)
    with review.read_only(settings) as conn:
        plan = read_plan(conn, found)
        items = {item.name: item for item in plan.plugins}
        Plan((items[name],)).require_known_revisions()
        check_downgrade_reachable(items[name], destination)
        applied = [p for p in graph.dependents_of(found, name) if items[p.name].current]
        refuse_without_cascade(plugin, applied, cascade)
        Plan(tuple(items[p.name] for p in applied)).require_known_revisions()
        return review.review_downgrade(
            conn, [*((items[p.name], "base") for p in reversed(applied)),
                   (items[name], destination)], lock_timeout=settings.lock_timeout)


def lint(settings: Settings, names: Sequence[str] = (), *, pending: bool = False,
         baseline: Path | None = None) -> Any:
    """`lint`: squawk and migrator's own rules over the revisions' rendered SQL (with
    `pending`, only those the database has not applied: that needs it; otherwise no
    database); a `.squawk.toml` in the migrations directory is squawk's; `baseline` accepts
    known findings. Returns a `lint.Report`."""
    from migrator import lint as linting

    found = plugins(settings)
    selected = select(found, names, with_dependencies=False)
    plans = None
    if pending:
        require_database(settings)
        with connection(settings) as conn:
            plans = read_plan(conn, selected).plugins
    return linting.run(selected, found, lock_timeout=settings.lock_timeout, plans=plans,
                       squawk_config=linting.squawk_config_in(settings.migrations_dir),
                       baseline=baseline)


def write_lint_baseline(report: Any, path: Path) -> int:
    """`lint --write-baseline`: accept the report's findings; how many were written."""
    from migrator import lint as linting

    return linting.write_baseline(path, report.findings)


def lint_findings(report: Any) -> None:
    """`lint`: exit 5 when anything was found."""
    if report.findings:
        raise FindingsReported(report.summary())
