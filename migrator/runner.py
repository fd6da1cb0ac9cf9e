"""Apply plans: per plugin, take its lock on the work session, set the plugin up, then run
each revision contained (`migrator.steps`), retrying lock conflicts.

The work session (`db.WorkSession`) holds the plugin's session-level advisory lock and does
all of the plugin's work itself — revisions, stamps, history rows, backfill batches — so
losing the session loses the lock with it and stops the plugin with exit 4: two runners never
run the same revision at the same time (DESIGN.md "How a run goes" 4).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql

from migrator import connections, db, locking, records, retries, scripts, steps
from migrator.config import DatabaseUrl, Settings
from migrator.environment import RevisionEnvironment
from migrator.errors import Interrupted, MigrationFailed, MigratorError, UnknownRevision
from migrator.failures import LockConflict
from migrator.logs import first_line, get_logger
from migrator.outcomes import Outcome
from migrator.plan import UNKNOWN_REVISION, PluginPlan
from migrator.stopping import StopRequest
from migrator.summary import PluginOutcome

if TYPE_CHECKING:
    from alembic.script import ScriptDirectory

    from migrator.discovery import Plugin


class Runner:
    """Applies plans on one work session (opened on first use)."""

    def __init__(self, settings: Settings, url: DatabaseUrl, stop: StopRequest, *,
                 schemas: dict[str, str] | None = None,
                 sleep: Callable[[float], None] = time.sleep,
                 loaded: dict[str, ScriptDirectory] | None = None) -> None:
        self.settings, self.url, self.stop = settings, url, stop
        self.schemas = schemas or {}  # plugin name -> schema, to find a dependency's tables
        self.sleep = sleep
        self.log = get_logger()
        self.outcomes: dict[str, PluginOutcome] = {}  # filled in as plugins run, even failing
        self._session: db.WorkSession | None = None
        self._scripts: dict[str, ScriptDirectory] = {} if loaded is None else loaded
        self._adopted: psycopg.Connection[Any] | None = None

    # -- public verbs ------------------------------------------------------------------------

    def prepare(self, plugins: list[Plugin]) -> None:
        """Load every tree that will run before touching the database: a broken file is
        found before anything is applied."""
        for plugin in plugins:
            if plugin.name not in self._scripts:
                self._scripts[plugin.name] = scripts.load_script(plugin)

    def forked(self, stop: StopRequest) -> Runner:
        """A Runner for a forked worker: the trees this one loaded, its own stop request,
        and its own session, opened on first use (this one must not have one open)."""
        assert self._session is None and self._adopted is None
        return Runner(self.settings, self.url, stop, schemas=self.schemas, sleep=self.sleep,
                      loaded=self._scripts)

    def upgrade(self, item: PluginPlan) -> PluginOutcome:
        return self._migrate(item.plugin, records.Direction.UP, item.target, check_plan=item)

    def downgrade(self, plugin: Plugin, destination: str) -> PluginOutcome:
        return self._migrate(plugin, records.Direction.DOWN, destination, check_plan=None)

    def stamp(self, plugin: Plugin, revision: str) -> PluginOutcome:
        """Record `revision` (or `base`) as the plugin's state without running anything."""
        started = time.monotonic()
        outcome = self._outcome(plugin)
        with db.guarded(), self._plugin(plugin) as (session, current):
            outcome.from_revision = outcome.to_revision = _label(current)
            with self._steps(plugin, session, records.Direction.STAMP).installed(current) as run:
                run.stamp(revision)
            after = self._current(session, plugin)
            outcome.to_revision = _label(after)
            changed = after != current
            if changed:
                outcome.applied.append(revision)
            outcome.outcome = Outcome.APPLIED if changed else Outcome.UP_TO_DATE
            self.log.info("revision.stamped", plugin=plugin.name, revision=revision,
                          changed=changed)
        outcome.duration_ms = _ms_since(started)
        return outcome

    def isolate(self, plugin: Plugin) -> None:
        """--isolate-roles for a plugin with nothing to run (the option turned on for an
        existing database): under its lock, its role, ownership and grants, as before a run."""
        control = self.session()
        with self._locked(control, plugin):
            self._set_up(control, plugin)
        self.log.info("roles.isolated", plugin=plugin.name, schema=plugin.schema)

    def close(self) -> None:
        if self._session is not None and self._session.sa is not None:
            with suppress(Exception):  # closing a connection that may already be broken
                self._session.sa.close()
        if self._session is not None:
            self._session.close()
            self._session = None

    # -- the work ----------------------------------------------------------------------------

    def _outcome(self, plugin: Plugin) -> PluginOutcome:
        outcome = PluginOutcome(plugin.name, None, None, outcome=Outcome.FAILED)
        self.outcomes[plugin.name] = outcome
        return outcome

    def _migrate(self, plugin: Plugin, direction: records.Direction, destination: str | None,
                 *, check_plan: PluginPlan | None) -> PluginOutcome:
        started = time.monotonic()
        self.stop.check(f"before plugin {plugin.name!r}")
        outcome = self._outcome(plugin)
        try:
            with db.guarded(), self._plugin(plugin) as (session, current):
                outcome.from_revision = outcome.to_revision = _label(current)
                if check_plan is not None and not self._still_pending(plugin, current,
                                                                      check_plan):
                    outcome.outcome = Outcome.UP_TO_DATE  # a peer did it while we waited
                    return outcome
                db.drop_invalid_indexes(session, plugin.schema)
                run = self._steps(plugin, session, direction)
                with run.installed(current):
                    todo = (run.upgrade_steps(destination) if direction is records.Direction.UP
                            else run.downgrade_steps(destination or "base"))
                    for number, step in enumerate(todo, start=1):
                        if self.stop.is_set():
                            outcome.outcome = Outcome.INTERRUPTED
                            break
                        applied = self._with_retries(run, step, last=number == len(todo))
                        outcome.applied.append(applied.revision)
                        outcome.to_revision = _label(tuple(sorted(run.heads)))
                        self._log_applied(plugin, direction, applied)
                    else:
                        outcome.outcome = (Outcome.APPLIED if outcome.applied
                                           else Outcome.UP_TO_DATE)
        except MigratorError as exc:
            outcome.outcome = (Outcome.INTERRUPTED if exc.exit_code == Interrupted.exit_code
                               else Outcome.FAILED)
            raise
        finally:
            outcome.duration_ms = _ms_since(started)
        if outcome.outcome is Outcome.INTERRUPTED:
            raise Interrupted(
                f"stopped by {self.stop.signal_name}: plugin {plugin.name!r} is at revision "
                f"{outcome.to_revision or 'base'} after {len(outcome.applied)} revision(s); "
                "everything done is committed, rerun to continue")
        return outcome

    def _still_pending(self, plugin: Plugin, current: tuple[str, ...],
                       item: PluginPlan) -> bool:
        fresh = PluginPlan.build(plugin, current, item.target)
        if fresh.state == UNKNOWN_REVISION:
            raise UnknownRevision(
                f"plugin {plugin.name!r} is at revision {_label(current)}, which is not in "
                f"{plugin.versions_dir}; restore the file or run: migrator stamp",
                plugin=plugin.name, revision=_label(current) or "")
        return bool(fresh.pending)

    def _log_applied(self, plugin: Plugin, direction: records.Direction,
                     applied: steps.Applied) -> None:
        event = "revision.applied" if direction is records.Direction.UP else "revision.reverted"
        self.log.info(event, plugin=plugin.name, revision=applied.revision,
                      message=applied.message, duration_ms=int(applied.seconds * 1000),
                      atomic=applied.atomic)

    def _with_retries(self, run: steps.PluginSteps, step: Any, *, last: bool
                      ) -> steps.Applied:
        """Run one step; on a lock conflict (rolled back) log the blockers, back off, retry."""
        delays = retries.backoff_delays()
        for attempt in range(self.settings.retries + 1):
            try:
                return run.run(step, last=last)
            except LockConflict as conflict:
                blockers = self._blockers(run.plugin)
                if attempt >= self.settings.retries or self.stop.is_set():
                    raise self._gave_up(run.plugin, conflict, blockers, attempt + 1) from None
                delay = next(delays)
                self.log.warning(
                    "lock_timeout.retry", plugin=run.plugin.name, revision=conflict.revision,
                    attempt=attempt + 1, of=self.settings.retries, retry_in_s=round(delay, 2),
                    error=first_line(conflict.error),
                    blockers=[{"pid": b.pid, "application_name": b.application_name,
                               "state": b.state, "transaction_age_s": b.transaction_age_s,
                               "query": b.query[:200]} for b in blockers])
                self._pause(delay)
        raise AssertionError("unreachable: the last attempt either returns or raises")

    def _pause(self, seconds: float) -> None:
        """Sleep in slices, ending early when a stop is requested."""
        deadline = time.monotonic() + seconds
        while not self.stop.is_set() and (left := deadline - time.monotonic()) > 0:
            self.sleep(min(left, 0.1))

    def _gave_up(self, plugin: Plugin, conflict: LockConflict,
                 blockers: list[locking.Blocker], attempts: int) -> MigrationFailed:
        rev_file = plugin.revision(conflict.revision)
        where = f"{plugin.name!r} revision {conflict.revision}" + (
            f" ({rev_file.filename})" if rev_file else "")
        who = "; ".join(b.describe() for b in blockers) or "unknown (they had finished)"
        return MigrationFailed(
            f"plugin {where} could not take its locks within --lock-timeout "
            f"{self.settings.lock_timeout:g}s after {attempts} attempt(s) "
            f"({first_line(conflict.error)}); blocking sessions: {who}; end or wait for them "
            "and rerun, nothing was half-applied", plugin=plugin.name,
            revision=conflict.revision)

    def _blockers(self, plugin: Plugin) -> list[locking.Blocker]:
        schemas = [plugin.schema, *(self.schemas.get(d, d) for d in plugin.depends_on)]
        session = self._session
        if session is None:
            return []
        try:
            with session.autocommit() as conn:
                return locking.blocking_sessions(conn, schemas=schemas,
                                                 exclude_pids=[session.backend_pid])
        except psycopg.Error:
            return []

    # -- session, lock, set-up ---------------------------------------------------------------

    def adopt(self, conn: psycopg.Connection[Any]) -> None:
        """Do the work on `conn` (an idle autocommit connection the command already read the
        plan with) rather than opening a second session."""
        self._adopted = conn

    def session(self) -> db.WorkSession:
        if self._session is None:
            conn = self._adopted or connections.connect(
                self.url, timeout=self.settings.connect_timeout, autocommit=True,
                writable=True)
            self._adopted = None
            with db.guarded():
                records.ensure_schema(conn)  # once, before any lock: peers serialise on it
            conn.autocommit = False
            self._session = db.WorkSession(conn, lock_timeout=self.settings.lock_timeout)
            # A second signal cancels the statement running now; it rolls back.
            self.stop.on_force.append(conn.cancel_safe)
        return self._session

    @contextmanager
    def _plugin(self, plugin: Plugin) -> Iterator[tuple[db.WorkSession, tuple[str, ...]]]:
        """The session that does `plugin`'s work, holding its lock, the plugin set up, and its
        current revisions read under the lock (work a peer finished is not redone).

        Normally that is the run's own session. Under --isolate-roles it is a sandboxed one,
        authenticated as the plugin's role: the run's session sets the plugin up under the
        lock and opens the role's login just for the moment of connecting, then the sandbox
        takes the lock itself (a peer that slips in between finds the work done, or does it
        while this one waits: never both at once)."""
        control = self.session()
        if not self.settings.isolate_roles:
            with self._locked(control, plugin):
                self._set_up(control, plugin)
                yield control, self._current(control, plugin)
            return
        from migrator import roles

        with self._locked(control, plugin):
            self._set_up(control, plugin)
            sandbox = self._open_sandbox(control, roles.owner_role(plugin.schema))
        work = db.WorkSession(sandbox, lock_timeout=self.settings.lock_timeout)
        self.stop.on_force.append(sandbox.cancel_safe)
        try:
            with self._locked(work, plugin):
                yield work, self._current(work, plugin)
        finally:
            self.stop.on_force.remove(sandbox.cancel_safe)
            if work.sa is not None:
                with suppress(Exception):  # the session may be broken
                    work.sa.close()
            work.close()

    def _open_sandbox(self, control: db.WorkSession, role: str) -> psycopg.Connection[Any]:
        """Connect as `role` with a one-time password. Roles are cluster-wide: a runner
        migrating another database of the same server may change or close the role's login
        between our two steps, so a refused login is tried again a few times."""
        from migrator import roles
        from migrator.errors import TargetRefused

        for attempt in range(5):
            with db.guarded(), control.autocommit() as conn:
                password = roles.open_login(conn, role)
                try:
                    return connections.connect_as(self.url, user=role, password=password,
                                                  timeout=self.settings.connect_timeout)
                except TargetRefused:
                    if attempt == 4:
                        raise
                finally:
                    roles.close_login(conn, role)
            self._pause(0.05 * (attempt + 1))
        raise AssertionError("unreachable: the last attempt returns or raises")

    @contextmanager
    def _locked(self, session: db.WorkSession, plugin: Plugin) -> Iterator[None]:
        """`plugin`'s lock on `session`, polled between transactions; released after."""
        session.reset(plugin.schema)
        with db.guarded():
            with session.autocommit() as conn:
                locking.acquire(conn, plugin=plugin.name, wait=self.settings.lock_wait,
                                log=self.log, should_stop=self.stop.is_set)
            session.locked = plugin.name
        try:
            with db.guarded():
                session.check_fence()
            yield
        finally:
            session.locked = None
            # If the connection is gone, its session lock went with it.
            with suppress(psycopg.Error), session.autocommit() as conn:
                locking.release(conn, plugin=plugin.name)

    def _set_up(self, session: db.WorkSession, plugin: Plugin) -> None:
        """The plugin's schema, version table, declared extensions and (--isolate-roles) its
        role, ownership and grants: in one transaction, as the login role, under the lock."""
        from migrator import roles

        def set_up() -> None:
            with session.autocommit() as conn, conn.transaction():
                if plugin.extensions or self.settings.isolate_roles:
                    conn.execute("SELECT pg_catalog.pg_advisory_xact_lock(%s)",
                                 (locking.SHARED_OBJECTS_KEY,))
                conn.execute(sql.SQL("; ").join(db.plugin_setup(plugin)))
                if self.settings.isolate_roles:
                    roles.prepare(conn, plugin, self.schemas)

        with db.guarded():
            # Roles are cluster-wide: runners on other databases of the server (or a peer
            # granting on a shared row) may write the same catalog row; the whole
            # transaction, idempotent, is simply run again.
            roles.retry_catalog_races(set_up)

    def _current(self, session: db.WorkSession, plugin: Plugin) -> tuple[str, ...]:
        with session.autocommit() as conn:
            return db.read_current_revisions(conn, [plugin]).get(plugin.schema, ())

    def _steps(self, plugin: Plugin, session: db.WorkSession,
               direction: records.Direction) -> steps.PluginSteps:
        if session.sa is None:
            session.sa = steps.sqlalchemy_connection(session.conn)
        holder: dict[str, steps.PluginSteps] = {}
        environment = RevisionEnvironment(
            plugin=plugin.name, schema=plugin.schema,
            current_revision=lambda: holder["run"].running,
            session=lambda: session.conn,
            reset=lambda: session.reset(plugin.schema),
            should_stop=self.stop.is_set, forced=self.stop.forced, log=self.log)
        run = steps.PluginSteps(plugin=plugin, session=session, sa_conn=session.sa,
                                safe_url=self.url.safe, environment=environment,
                                direction=direction, script=self._scripts.get(plugin.name),
                                record_elsewhere=self._record_elsewhere)
        holder["run"] = run
        return run


    def _record_elsewhere(self, attempt: records.Attempt) -> None:
        """Best effort: a failed attempt's history row when the work session is gone."""
        try:
            with connections.connect(self.url, timeout=min(5.0, self.settings.connect_timeout)
                                     ) as conn:
                records.record(conn, attempt)
        except (psycopg.Error, MigratorError) as exc:
            self.log.warning("history.record_failed", plugin=attempt.plugin,
                             revision=attempt.revision, error=first_line(exc))


def _label(revisions: tuple[str, ...]) -> str | None:
    return ",".join(revisions) if revisions else None


def _ms_since(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
