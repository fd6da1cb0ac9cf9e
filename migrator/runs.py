"""The commands that change the database — `upgrade`, `downgrade` (with `--cascade`), `stamp`
and `repair` — each returning its `RunSummary`, which is also logged and written as the
Kubernetes termination message however the command ends."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from migrator import db, graph, records
from migrator.commands import (
    check_downgrade_reachable,
    connection,
    downgrade_destination,
    plugin_named,
    plugins,
    read_plan,
    refuse_without_cascade,
    require_single_heads,
    select,
)
from migrator.config import Settings
from migrator.connections import host_identity
from migrator.errors import Interrupted, MigratorError, UsageError
from migrator.logs import get_logger, redact
from migrator.outcomes import Outcome
from migrator.plan import Plan, resolve_revision
from migrator.stopping import StopRequest
from migrator.summary import PluginOutcome, RunSummary, finish

if TYPE_CHECKING:
    import psycopg

    from migrator.discovery import Plugin
    from migrator.runner import Runner


@contextmanager
def reported(command: str) -> Iterator[RunSummary]:
    """The run summary of a command that changes the database: logged and written to the
    termination message however the command ends."""
    summary = RunSummary(command=command)
    started = time.monotonic()
    try:
        yield summary
    except MigratorError as exc:
        summary.stopped = exc.exit_code == Interrupted.exit_code
        summary.error = redact(str(exc))
        raise
    except BaseException as exc:
        summary.error = redact(f"{type(exc).__name__}: {exc}")
        raise
    finally:
        summary.duration_ms = int((time.monotonic() - started) * 1000)
        finish(summary)


@contextmanager
def runner_for(settings: Settings, found: list[Plugin], to_run: list[Plugin],
               summary: RunSummary, conn: psycopg.Connection[Any] | None = None
               ) -> Iterator[Runner]:
    """A Runner with signal handling installed and the trees that will run loaded; its
    outcomes land in `summary` however it ends."""
    from migrator.runner import Runner

    with StopRequest().installed() as stop:
        runner = Runner(settings, db.resolve_url(settings), stop,
                        schemas={p.name: p.schema for p in found})
        if conn is not None:
            runner.adopt(conn)
        try:
            runner.prepare(to_run)
            yield runner
        finally:
            for outcome in runner.outcomes.values():
                summary.put(outcome)
            runner.close()


def upgrade(settings: Settings, names: Sequence[str] = (), *, to: str | None = None
            ) -> RunSummary:
    """Apply pending revisions in dependency order; the named plugins' dependencies first."""
    if to is not None and len(names) != 1:
        raise UsageError(
            "--to needs exactly one --plugin (a revision belongs to one plugin's tree)")
    with reported("upgrade") as summary:
        found = plugins(settings)
        selected = select(found, names, with_dependencies=True)
        require_single_heads(selected)
        targets = ({names[0]: resolve_revision(plugin_named(found, names[0]), to)}
                   if to is not None else {})  # `--to ''` names no revision: refused
        with connection(settings) as conn:
            plan = read_plan(conn, selected, targets)
            plan.require_known_revisions()
            summary.plugins = [
                PluginOutcome(p.name, p.current_label, p.current_label,
                              outcome=Outcome.SKIPPED if p.pending else Outcome.UP_TO_DATE)
                for p in plan.plugins]
            if plan.pending:
                get_logger().info("run.started", command="upgrade",
                                  database=db.resolve_url(settings).target,
                                  plugins=[item.name for item in plan.pending])
                _apply(settings, conn, found, plan, summary)
            if settings.isolate_roles:
                _isolate(settings, conn, found, plan, summary)
    return summary


def _apply(settings: Settings, conn: psycopg.Connection[Any], found: list[Plugin], plan: Plan,
           summary: RunSummary) -> None:
    if settings.jobs > 1 and len(plan.pending) > 1:
        from migrator.parallel import upgrade_in_parallel

        # The trees are loaded here, before the pool forks: once for every worker, and a
        # broken file stops the run before anything is applied.
        with runner_for(settings, found, [item.plugin for item in plan.pending],
                        summary) as prepared:
            upgrade_in_parallel(prepared, list(plan.pending), prepared.stop,
                                on_result=summary.put)
        return
    with runner_for(settings, found, [item.plugin for item in plan.pending], summary,
                    conn) as runner:
        for item in plan.pending:
            runner.upgrade(item)
            runner.stop.check("between plugins")


def _isolate(settings: Settings, conn: psycopg.Connection[Any], found: list[Plugin],
             plan: Plan, summary: RunSummary) -> None:
    """--isolate-roles also for plugins with nothing pending (the option turned on for an
    existing database); one catalog query when every schema is already its role's."""
    from migrator import roles

    if conn.closed:
        return
    stale = set(roles.needing_setup(conn, [p.plugin.schema for p in plan.plugins if p.current]))
    if stale:
        isolated = RunSummary(command="isolate")
        with runner_for(settings, found, [], isolated) as runner:
            for item in plan.plugins:
                if item.plugin.schema in stale:
                    runner.isolate(item.plugin)


def applied_dependents(found: list[Plugin], plugin: Plugin, plan: Plan) -> list[Plugin]:
    """The plugins that depend on `plugin` (directly or not) and have revisions applied, in
    dependency order."""
    applied = {item.name for item in plan.plugins if item.current}
    return [p for p in graph.dependents_of(found, plugin.name) if p.name in applied]


def downgrade(settings: Settings, name: str, to: str, *, cascade: bool = False) -> RunSummary:
    """Revert one plugin to `to`: a revision, `-N` (N steps back) or `base`; with `cascade`,
    the applied plugins that depend on it are first reverted to base, dependents first."""
    with reported("downgrade") as summary:
        found = plugins(settings)
        plugin = plugin_named(found, name)
        require_single_heads([*graph.dependents_of(found, name), plugin] if cascade
                             else [plugin])
        destination = downgrade_destination(plugin, to)
        with connection(settings) as conn:
            plan = read_plan(conn, found)
            item = next(p for p in plan.plugins if p.name == plugin.name)
            Plan((item,)).require_known_revisions()
            check_downgrade_reachable(item, destination)
            dependents = applied_dependents(found, plugin, plan)
            refuse_without_cascade(plugin, dependents, cascade)
            Plan(tuple(p for p in plan.plugins if p.plugin in dependents)
                 ).require_known_revisions()
            with runner_for(settings, found, [*dependents, plugin], summary, conn) as runner:
                for dependent in reversed(dependents):
                    runner.downgrade(dependent, "base")
                    runner.stop.check("between plugins")
                runner.downgrade(plugin, destination)
    return summary


def stamp(settings: Settings, name: str, revision: str) -> RunSummary:
    """Record `revision` (or `head` / `base`) as applied without running it."""
    with reported("stamp") as summary:
        found = plugins(settings)
        plugin = plugin_named(found, name)
        require_single_heads([plugin])
        target = "base" if revision == "base" else resolve_revision(plugin, revision)
        with connection(settings) as conn, runner_for(settings, found, [plugin], summary,
                                                      conn) as runner:
            runner.stamp(plugin, target)
    return summary


def repair(settings: Settings, name: str) -> list[dict[str, Any]]:
    """Accept intentional edits of applied revisions: a `repair` history row with the file's
    current checksum for each applied revision whose recorded checksum differs."""
    found = plugins(settings)
    plugin = plugin_named(found, name)
    repaired: list[dict[str, Any]] = []
    with connection(settings) as conn:
        records.ensure_schema(conn)
        recorded = records.applied_checksums(conn).get(plugin.name, {})
        now = datetime.now(UTC)
        with conn.transaction():
            for revision, (old, _when) in sorted(recorded.items()):
                rev_file = plugin.revision(revision)
                if rev_file is None or rev_file.checksum_matches(old):
                    continue
                new = rev_file.checksum
                records.record(conn, records.Attempt(
                    plugin=plugin.name, schema=plugin.schema, revision=revision,
                    direction=records.Direction.REPAIR, checksum=new, started_at=now,
                    finished_at=now, applied_by=host_identity(),
                    outcome=records.AttemptOutcome.APPLIED))
                repaired.append({"revision": revision, "old": old, "new": new})
    get_logger().info("repair.done", plugin=plugin.name, repaired=len(repaired))
    return repaired
