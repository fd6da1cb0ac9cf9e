"""One plain function per verb: settings in, data out. The CLI only parses and renders."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg

from migrator import connections, db, discovery, graph, records
from migrator.config import Settings
from migrator.discovery import Plugin
from migrator.errors import (
    ConfigError,
    DatabaseUnreachable,
    DependentsApplied,
    FindingsReported,
    UnknownPlugin,
    UsageError,
    WaitTimeout,
)
from migrator.logs import first_line, get_logger
from migrator.plan import (
    MULTIPLE_HEADS,
    ORPHANED,
    PENDING,
    UNKNOWN_REVISION,
    Plan,
    PluginPlan,
    resolve_revision,
)

if TYPE_CHECKING:
    from migrator import checks
    from migrator.revisions import RevisionFile
    from migrator.scaffold import NewRevision

TERMINATION_LOG = Path("/dev/termination-log")
TERMINATION_LOG_LIMIT = 4096  # bytes Kubernetes keeps of a termination message


# -- discovery ------------------------------------------------------------------------------


def plugins(settings: Settings) -> list[Plugin]:
    """Every discovered plugin, validated, in dependency order."""
    found = discovery.discover(settings.migrations_dir)
    log = get_logger()
    for plugin in found:
        log.debug("plugin.discovered", plugin=plugin.name, schema=plugin.schema,
                  source=plugin.source, head=plugin.head, revisions=len(plugin.revisions))
    return found


def select(found: list[Plugin], names: Sequence[str], *, with_dependencies: bool) -> list[Plugin]:
    """The named plugins (all when none are named), optionally with their dependencies."""
    if not names:
        return found
    known = {p.name for p in found}
    for name in names:
        if name not in known:
            raise UnknownPlugin(
                f"unknown plugin {name!r}; discovered plugins: {', '.join(sorted(known)) or 'none'}"
                " (see: migrator plugins)", plugin=name)
    if with_dependencies:
        return graph.with_dependencies(found, names)
    return [p for p in found if p.name in set(names)]


def plugin_named(found: list[Plugin], name: str) -> Plugin:
    return select(found, [name], with_dependencies=False)[0]


def require_single_heads(selected: Sequence[Plugin]) -> None:
    """Commands that migrate (or render a migration) refuse a tree with several heads
    before connecting: `TreeError` (exit 2) naming the heads and the merge command."""
    for plugin in selected:
        plugin.require_single_head()


# -- connections ----------------------------------------------------------------------------


@contextmanager
def connection(settings: Settings) -> Iterator[psycopg.Connection[Any]]:
    """The autocommit connection a command reads with (and holds advisory locks on)."""
    url = db.resolve_url(settings)
    conn = connections.connect(url, timeout=settings.connect_timeout)
    try:
        yield conn
    except psycopg.Error as exc:
        # migrator's own statements (not a revision's: the runner reports those) were refused.
        raise db.database_error(exc) from exc
    finally:
        conn.close()


# -- status ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Orphan:
    """A plugin migrator once migrated whose tree is no longer discovered."""

    name: str
    schema: str
    current: tuple[str, ...]
    version_table: str = db.VERSION_TABLE


@dataclass(frozen=True, slots=True)
class Status:
    plan: Plan
    orphans: tuple[Orphan, ...]
    backfills: tuple[dict[str, Any], ...] = ()

    def as_dict(self) -> dict[str, Any]:
        rows = [{"name": p.name, "schema": p.plugin.schema,
                 "current": p.current_label, "head": p.plugin.head,
                 "heads": list(p.plugin.heads),
                 "pending": list(p.pending), "state": p.state} for p in self.plan.plugins]
        rows += [{"name": o.name, "schema": o.schema,
                  "current": ",".join(o.current) or None, "head": None, "heads": [],
                  "pending": [],
                  "state": ORPHANED} for o in self.orphans]
        result: dict[str, Any] = {"plugins": rows}
        if self.backfills:
            result["backfills"] = list(self.backfills)
        return result

    @property
    def needs_attention(self) -> bool:
        return any(p.state in ATTENTION for p in self.plan.plugins)


ATTENTION = (PENDING, UNKNOWN_REVISION, MULTIPLE_HEADS)  # what `status --check` counts


def read_plan(conn: psycopg.Connection[Any], selected: list[Plugin],
              targets: dict[str, str] | None = None) -> Plan:
    current = db.read_current_revisions(conn, selected)
    return Plan.build(selected, current, targets=targets)


def status(settings: Settings, names: Sequence[str] = ()) -> Status:
    found = plugins(settings)
    selected = select(found, names, with_dependencies=False)
    with connection(settings) as conn:
        plan = read_plan(conn, selected)
        orphans = () if names else _orphans(conn, found)
        backfills = tuple(b.as_dict() for b in records.unfinished_backfills(
            conn, [p.name for p in selected]))
    return Status(plan=in_alembic_order(plan), orphans=orphans, backfills=backfills)


def in_alembic_order(plan: Plan) -> Plan:
    """`plan` with each pending list in exactly the order `alembic upgrade` applies it
    (branches and merges included). Alembic is imported only when something is pending."""
    if not any(item.pending for item in plan.plugins):
        return plan
    from migrator import scripts

    return plan.reordered(
        lambda item: scripts.upgrade_order(item.plugin, item.current, item.target))


def _orphans(conn: psycopg.Connection[Any], found: list[Plugin]) -> tuple[Orphan, ...]:
    discovered = {p.name for p in found}
    claimed = {p.schema for p in found}
    candidates = {name: schema for name, schema in records.known_plugins(conn).items()
                  if name not in discovered and schema not in claimed}
    if not candidates:
        return ()
    present = set(db.schemas_with_version_table(conn, candidates.values()))
    orphans = [Orphan(name, schema, ()) for name, schema in sorted(candidates.items())
               if schema in present]
    current = db.read_current_revisions(conn, orphans)
    return tuple(Orphan(o.name, o.schema, current.get(o.schema, ())) for o in orphans)


def check_status(report: Status) -> None:
    """`status --check`: exit 5 when anything is pending, at an unknown revision, or has
    several heads."""
    if report.needs_attention:
        troubled = [f"{p.name} ({p.state})" for p in report.plan.plugins if p.state in ATTENTION]
        forked = [p.name for p in report.plan.multiple_heads]
        next_step = (f"; merge the heads first: migrator merge --plugin {forked[0]} -m "
                     "\"merge heads\"" if forked else "; run: migrator upgrade")
        raise FindingsReported("not at head: " + ", ".join(troubled) + next_step)


# -- check ----------------------------------------------------------------------------------


def check(settings: Settings) -> checks.Report:
    """Edited applied revisions, unknown revisions, orphaned plugins, model drift and INVALID
    indexes, read in a READ ONLY session (nothing is created, not even the migrator schema)."""
    found = plugins(settings)
    with connection(settings) as conn:
        conn.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
        from migrator import checks  # alembic and SQLAlchemy: not on the no-op path

        return checks.run(conn, db.resolve_url(settings), found, _orphans(conn, found),
                          connect_timeout=settings.connect_timeout)


def check_findings(report: checks.Report) -> None:
    """`check`: exit 5 when anything was found."""
    if report.findings:
        raise FindingsReported(report.summary())


# -- downgrade targets -----------------------------------------------------------------------


def downgrade_destination(plugin: Plugin, to: str) -> str:
    if to == "base":
        return "base"
    if to.startswith("-"):
        if not to[1:].isdigit() or int(to[1:]) < 1:
            raise UsageError(f"--to {to!r}: a relative step is written -N with N ≥ 1, like -1")
        return to
    return resolve_revision(plugin, to)


def check_downgrade_reachable(item: PluginPlan, destination: str) -> None:
    """Refuse, before anything runs, a destination that is not below the current revision."""
    from migrator.plan import ancestry

    applied = ancestry(item.plugin, item.current) if item.current else set()
    where = f"plugin {item.name!r} is at {item.current_label or 'base (nothing applied)'}"
    if destination == "base":
        return
    if destination.startswith("-"):
        steps = int(destination[1:])
        if steps > len(applied):
            raise UsageError(
                f"--to {destination}: {where}, only {len(applied)} revision(s) can be reverted; "
                "use --to base to revert them all")
        return
    if destination not in applied:
        raise UsageError(
            f"--to {destination}: {where}, and {destination} is not below it; downgrade only "
            f"goes back (to go forward: migrator upgrade --plugin {item.name} --to "
            f"{destination})")



# -- downgrade and dependents --------------------------------------------------------------


def refuse_without_cascade(plugin: Plugin, dependents: list[Plugin], cascade: bool) -> None:
    """Reverting a plugin that applied plugins depend on would break their foreign keys
    half-way: refuse before anything changes, unless `--cascade`."""
    if dependents and not cascade:
        listed = ", ".join(p.name for p in dependents)
        raise DependentsApplied(
            f"plugin {plugin.name!r}: applied plugins depend on it ({listed}); revert them "
            "first, or rerun with --cascade to revert them to base before it",
            plugin=plugin.name, dependents=[p.name for p in dependents])


# -- reading ----------------------------------------------------------------------------------


def current(settings: Settings, names: Sequence[str] = ()) -> Plan:
    found = plugins(settings)
    with connection(settings) as conn:
        return read_plan(conn, select(found, names, with_dependencies=False))


def history(settings: Settings, name: str
            ) -> tuple[Plugin, list[RevisionFile], list[dict[str, Any]]]:
    """The plugin's tree, its revisions newest first in `alembic history`'s order, and its
    `migrator.history` records (empty without a database)."""
    from migrator import scripts

    found = plugins(settings)
    plugin = plugin_named(found, name)
    revisions = [rev for rev in map(plugin.revision, scripts.history_order(plugin)) if rev]
    if settings.database_url is None and not settings.embedded:
        return plugin, revisions, []
    with connection(settings) as conn:
        return plugin, revisions, records.history(conn, plugin.name)


def wait(settings: Settings, *, timeout: float, interval: float = 2.0,
         sleep: Callable[[float], None] = time.sleep,
         clock: Callable[[], float] = time.monotonic) -> Plan:
    """Poll until every plugin is at head; an unreachable database counts as "not yet"."""
    found = plugins(settings)
    require_single_heads(found)  # several heads never reach "at head": waiting cannot heal it
    url = db.resolve_url(settings)
    log = get_logger()
    deadline = clock() + timeout
    reason = "not checked yet"
    while True:
        try:
            with connections.connect(url, timeout=0) as conn:
                plan = read_plan(conn, found)
            if not plan.pending and not plan.unknown:
                log.info("wait.ready", plugins=len(found))
                return plan
            reason = "pending: " + ", ".join(p.name for p in (*plan.pending, *plan.unknown))
        except (psycopg.Error, DatabaseUnreachable) as exc:
            reason = "database not reachable: " + first_line(exc)
        if clock() >= deadline:
            raise WaitTimeout(f"gave up after {timeout:g}s waiting for migrations ({reason}); "
                              "check the migration job or init container logs")
        log.info("wait.waiting", reason=reason)
        sleep(min(interval, max(deadline - clock(), 0.05)))


def require_database(settings: Settings) -> None:
    if settings.database_url is None and not settings.embedded:
        raise ConfigError(db.NO_DATABASE_HELP)


# -- plugin authors: new files ----------------------------------------------------------------


def new_plugin(settings: Settings, name: str, *, schema: str | None = None,
               depends_on: Sequence[str] = (), description: str = "") -> Path:
    """Create `<migrations-dir>/NAME/versions/` and a commented `plugin.toml` (no database)."""
    from migrator import scaffold

    return scaffold.new_plugin(settings.migrations_dir, name, schema=schema,
                               depends_on=depends_on, description=description)


def revision(settings: Settings, name: str, message: str, *, autogenerate: bool = False,
             rev_id: str | None = None) -> NewRevision:
    """Write a new revision file in the plugin's tree (a merge revision when it has two
    heads); with `autogenerate`, from comparing its models with its schema in the database."""
    from migrator import scaffold

    url = None
    if autogenerate:
        require_database(settings)
        url = db.resolve_url(settings)
    return scaffold.new_revision(settings.migrations_dir, name, message, rev_id=rev_id,
                                 autogenerate=autogenerate, url=url)


def merge(settings: Settings, name: str, message: str) -> NewRevision:
    """`merge`: write the merge revision of a plugin's tree with several heads."""
    from migrator import scaffold

    return scaffold.merge_heads(settings.migrations_dir, name, message)
