"""Apply a `Plan`: per plugin, take its lock, then one transaction per revision.

Each revision's DDL, its version stamp and its `migrator.history` row commit together, so a
crash leaves every plugin at a revision boundary. Alembic runs the revisions (its
`MigrationContext` with `transaction_per_migration`); migrator supplies the environment:
the plugin's schema as `search_path`, `lock_timeout`, retries and the history rows.
"""

from __future__ import annotations

import functools
import signal
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import FrameType
from typing import TYPE_CHECKING, Any, cast

import psycopg
from psycopg import sql

from migrator import db, locking, records, retries
from migrator.config import DatabaseUrl, Settings
from migrator.discovery import Plugin
from migrator.environment import ENVIRONMENT_KEY, RevisionEnvironment
from migrator.errors import (
    ConnectionLost,
    Interrupted,
    MigrationFailed,
    MigratorError,
    TreeError,
    UnknownRevision,
)
from migrator.logs import get_logger, redact
from migrator.plan import UNKNOWN_REVISION, PluginPlan

if TYPE_CHECKING:
    from alembic.script import ScriptDirectory
    from sqlalchemy.engine import Connection, Engine

UP, DOWN, STAMP = "up", "down", "stamp"


class StopRequest:
    """Set by SIGTERM/SIGINT: finish the current revision, release locks, exit 6."""

    def __init__(self) -> None:
        self.signal_name: str | None = None

    def is_set(self) -> bool:
        return self.signal_name is not None

    @contextmanager
    def installed(self) -> Iterator[StopRequest]:
        def handler(signum: int, _frame: FrameType | None) -> None:
            if self.signal_name is not None:
                # A second signal: the operator insists. Abort now; the open transaction
                # rolls back, so the plugin still sits at a revision boundary.
                raise KeyboardInterrupt
            self.signal_name = signal.Signals(signum).name
            get_logger().warning("run.stopping", signal=self.signal_name,
                                 detail="finishing the current revision, then exiting")

        previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield self
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)

    def check(self, where: str) -> None:
        if self.is_set():
            raise Interrupted(f"stopped by {self.signal_name} {where}; the work done so far "
                              "is committed, rerun to continue")


@dataclass(slots=True)
class PluginOutcome:
    """What a run did to one plugin (one entry of the run summary)."""

    plugin: str
    from_revision: str | None
    to_revision: str | None
    applied: list[str] = field(default_factory=list)
    duration_ms: int = 0
    outcome: str = "up_to_date"  # up_to_date | applied | failed | interrupted | skipped

    def as_dict(self) -> dict[str, Any]:
        return {"plugin": self.plugin, "from": self.from_revision, "to": self.to_revision,
                "applied": len(self.applied), "duration_ms": self.duration_ms,
                "outcome": self.outcome}


def load_script(plugin: Plugin) -> ScriptDirectory:
    """Alembic's view of the tree (imports every revision module), checked against ours."""
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    script = ScriptDirectory(str(plugin.path), version_locations=[str(plugin.versions_dir)])
    try:
        heads = script.get_heads()  # builds the revision map: imports every revision module
        for rev in plugin.revisions:
            script.get_revision(rev.revision)
    except SyntaxError as exc:
        raise TreeError(f"{exc.filename}:{exc.lineno}: syntax error ({exc.msg}); fix the file",
                        plugin=plugin.name, path=exc.filename) from None
    except CommandError as exc:
        raise TreeError(
            f"plugin {plugin.name!r}: Alembic reads the tree differently ({exc}); keep "
            "`revision = \"...\"` and `down_revision = ...` plain one-line literals",
            plugin=plugin.name) from None
    except Exception as exc:  # a revision module failed to import: user code, any error type
        where = _revision_frame(exc, plugin)
        raise TreeError(f"{where}: importing the revision failed ({type(exc).__name__}: {exc}); "
                        "fix the file", plugin=plugin.name, path=where) from None
    if list(heads) != ([plugin.head] if plugin.head else []):
        raise TreeError(
            f"plugin {plugin.name!r}: Alembic finds heads {list(heads)}, the files declare "
            f"{plugin.head}; keep `revision` and `down_revision` plain one-line literals",
            plugin=plugin.name)
    return script


def _revision_frame(exc: BaseException, plugin: Plugin) -> str:
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if f.filename.startswith(str(plugin.versions_dir))]
    return f"{frames[-1].filename}:{frames[-1].lineno}" if frames else str(plugin.versions_dir)


class _Steps:
    """Feeds Alembic the steps one at a time: stops between revisions when asked, knows
    which revision is running, and writes each one's history row inside its transaction."""

    def __init__(self, runner: Runner, plugin: Plugin, direction: str, destination: str,
                 script: ScriptDirectory, committed: list[str]) -> None:
        self.runner, self.plugin, self.direction = runner, plugin, direction
        self.destination, self.script = destination, script
        self.current: str | None = None
        self.started_at = datetime.now(UTC)
        self.applied: list[str] = []  # stamped in a transaction (committed or not yet)
        self.committed = committed  # known committed: appended once the next step starts
        self.stopped_early = False
        self._last: str | None = None
        self._unlogged: tuple[str, float] | None = None

    def __call__(self, heads: tuple[str, ...], _context: Any) -> Iterator[Any]:
        if self.direction == UP:
            steps = self._upgrade_steps(heads)
        else:
            # The call alembic.command.downgrade makes (it resolves `-N` and `base`); it
            # accepts the heads tuple although annotated with `str`.
            current: Any = heads
            steps = self.script._downgrade_revs(self.destination, current)
        ids = [self._revision_of(step) for step in steps]
        self._last = ids[-1] if ids else None
        for number, (step, revision) in enumerate(zip(steps, ids, strict=True)):
            self._log_committed()
            if self.runner.stop.is_set():
                self.stopped_early = True
                return
            if number:
                self.runner.check_lock(self.plugin, revision)
            self.current = revision
            self.started_at = datetime.now(UTC)
            yield step
        self._log_committed()

    def _upgrade_steps(self, heads: tuple[str, ...]) -> list[Any]:
        """Alembic steps for the revisions our plan says are pending from `heads`, oldest
        first: the same list alembic.command.upgrade builds, without re-walking the graph."""
        from alembic.runtime.migration import MigrationStep

        target = None if self.destination == "heads" else self.destination
        plan = PluginPlan.build(self.plugin, tuple(heads), target)
        revision_map = self.script.revision_map
        return [MigrationStep.upgrade_from_script(revision_map, self.script.get_revision(rev))
                for rev in plan.pending]

    def current_revision(self) -> str | None:
        return self.current

    @staticmethod
    def _revision_of(step: Any) -> str:
        return str(step.revision.revision)

    def on_applied(self, *, ctx: Any, step: Any, heads: Any, run_args: Any) -> None:
        """Alembic callback, inside the revision's transaction, after its version stamp."""
        revision = self.current
        assert revision is not None
        conn = driver_connection(ctx.connection)
        self.runner.as_login_role(conn)
        finished = datetime.now(UTC)
        rev_file = self.plugin.revision(revision)
        records.record(conn, records.Attempt(
            plugin=self.plugin.name, schema=self.plugin.schema, revision=revision,
            direction=self.direction,
            checksum=records.checksum(rev_file.path) if rev_file else None,
            started_at=self.started_at, finished_at=finished, applied_by=db.host_identity(),
            outcome="applied"))
        if self.direction == DOWN:
            records.forget_backfills(conn, self.plugin.name, revision)
        if revision == self._last:
            # Earlier revisions committed with synchronous_commit off; this commit waits for
            # the WAL flush, which (WAL being sequential) makes all of them durable too.
            conn.execute("SET LOCAL synchronous_commit TO on")
        self.applied.append(revision)
        self._unlogged = (revision, (finished - self.started_at).total_seconds())

    def _log_committed(self) -> None:
        if self._unlogged is not None:
            revision, seconds = self._unlogged
            self.committed.append(revision)
            event = "revision.applied" if self.direction == UP else "revision.reverted"
            self.runner.log.info(event, plugin=self.plugin.name, revision=revision,
                                 duration_ms=int(seconds * 1000))
            self._unlogged = None


class Runner:
    """Applies plans with one lock connection (autocommit) and one work connection."""

    def __init__(self, settings: Settings, url: DatabaseUrl, lock_conn: psycopg.Connection[Any],
                 stop: StopRequest, *, schemas: dict[str, str] | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.settings, self.url, self.lock_conn, self.stop = settings, url, lock_conn, stop
        self.schemas = schemas or {}  # plugin name -> schema, to find a dependency's tables
        self.sleep = sleep
        self.log = get_logger()
        self.outcomes: dict[str, PluginOutcome] = {}  # filled in as plugins run, even failing
        self._lock_checked_at = time.monotonic()
        self._engine: Engine | None = None
        self._conn: Connection | None = None
        self._scripts: dict[str, ScriptDirectory] = {}

    # -- public verbs ------------------------------------------------------------------

    def prepare(self, plugins: list[Plugin]) -> None:
        """Load every tree that will run before touching the database: a broken file is
        found before anything is applied."""
        for plugin in plugins:
            if plugin.name not in self._scripts:
                self._scripts[plugin.name] = load_script(plugin)
        records.ensure_schema(self.lock_conn)

    def upgrade(self, item: PluginPlan) -> PluginOutcome:
        return self._migrate(item.plugin, UP, item.target or "heads", item)

    def downgrade(self, plugin: Plugin, destination: str) -> PluginOutcome:
        return self._migrate(plugin, DOWN, destination, None)

    def stamp(self, plugin: Plugin, revision: str) -> PluginOutcome:
        """Record `revision` (or `base`) as the plugin's state without running anything."""
        from alembic.runtime.migration import MigrationContext

        script = self._scripts.get(plugin.name) or load_script(plugin)
        with self._plugin_lock(plugin), self._work_connection(plugin) as conn:
            before = self._current(plugin)
            outcome = PluginOutcome(plugin.name, _label(before), None if revision == "base"
                                    else revision)
            self.outcomes[plugin.name] = outcome
            started = datetime.now(UTC)
            with conn.begin():
                ctx = MigrationContext.configure(
                    connection=conn, opts={"version_table_schema": plugin.schema})
                ctx.stamp(script, revision)
                self.as_login_role(driver_connection(conn))
                rev_file = plugin.revision(revision)
                records.record(driver_connection(conn), records.Attempt(
                    plugin=plugin.name, schema=plugin.schema, revision=revision,
                    direction=STAMP, checksum=records.checksum(rev_file.path) if rev_file else None,
                    started_at=started, finished_at=datetime.now(UTC),
                    applied_by=db.host_identity(), outcome="applied"))
            self.log.info("revision.stamped", plugin=plugin.name, revision=revision)
            outcome.outcome = "applied"
            outcome.applied.append(revision)
            return outcome

    def _side_connection(self, plugin: Plugin) -> psycopg.Connection[Any]:
        """A new autocommit connection set up like the revision's own (for backfills)."""
        conn = db.connect(self.url, timeout=self.settings.connect_timeout)
        conn.execute("SELECT set_config('lock_timeout', %s, false), "
                     "set_config('synchronous_commit', 'off', false)",
                     (f"{int(self.settings.lock_timeout * 1000)}ms",))
        if self.settings.isolate_roles:
            from migrator import roles

            conn.execute(sql.SQL("SET ROLE {}").format(
                sql.Identifier(roles.owner_role(plugin.schema))))
        conn.execute(sql.SQL("SET search_path TO {}, public").format(
            sql.Identifier(plugin.schema)))
        return conn

    def as_login_role(self, conn: psycopg.Connection[Any]) -> None:
        """Under --isolate-roles, switch back to the login role for the rest of this
        transaction: the plugin's role may not write migrator's records."""
        if self.settings.isolate_roles:
            conn.execute("SET LOCAL ROLE NONE")

    def check_lock(self, plugin: Plugin, revision: str) -> None:
        """The plugin's session lock lives as long as the lock connection: before each next
        revision, make sure that connection is still there (a terminated or restarted one
        took the lock with it, and a peer may hold it now).

        At most once a second: a round trip per revision would cost a fresh apply more than
        it protects. The lock is belt and braces anyway: each revision's version UPDATE must
        match exactly one row, so a peer applying the same revision fails and rolls back."""
        now = time.monotonic()
        if now - self._lock_checked_at < 1.0:
            return
        self._lock_checked_at = now
        try:
            self.lock_conn.execute("SELECT 1")
        except psycopg.Error as exc:
            raise ConnectionLost(
                f"plugin {plugin.name!r}: lost the connection holding its migration lock "
                f"({_message(exc)}) before revision {revision}; the revisions before it are "
                "committed, rerun once the database is reachable") from None

    def isolate(self, plugin: Plugin) -> None:
        """--isolate-roles for a plugin with nothing to run (the option turned on for an
        existing database): under its lock, its role, ownership and grants, as before a run."""
        with self._plugin_lock(plugin), self._work_connection(plugin):
            self.log.info("roles.isolated", plugin=plugin.name, schema=plugin.schema)

    def close(self) -> None:
        if self._conn is not None:
            with suppress(Exception):  # closing a connection that may already be broken
                self._conn.close()
            self._conn = None
        if self._engine is not None:
            self._engine.dispose()

    # -- the work ------------------------------------------------------------------------

    def _migrate(self, plugin: Plugin, direction: str, destination: str,
                 item: PluginPlan | None) -> PluginOutcome:
        started = time.monotonic()
        self.stop.check(f"before plugin {plugin.name!r}")
        script = self._scripts.get(plugin.name) or load_script(plugin)
        with self._plugin_lock(plugin):
            current = self._current(plugin)
            outcome = PluginOutcome(plugin.name, _label(current), _label(current))
            self.outcomes[plugin.name] = outcome
            if item is not None:
                fresh = PluginPlan.build(plugin, current, item.target)
                if fresh.state == UNKNOWN_REVISION:
                    raise UnknownRevision(
                        f"plugin {plugin.name!r} is at revision {_label(current)}, which is not "
                        f"in {plugin.versions_dir}; restore the file or run: migrator stamp",
                        plugin=plugin.name, revision=_label(current) or "")
                if not fresh.pending:
                    # A peer finished the work while we waited for the lock.
                    return outcome
            try:
                with self._work_connection(plugin) as conn:
                    stopped_early = self._run_with_retries(conn, plugin, direction,
                                                           destination, script, outcome)
                outcome.outcome = "interrupted" if stopped_early else (
                    "applied" if outcome.applied else "up_to_date")
            except MigratorError as exc:
                outcome.outcome = "interrupted" if exc.exit_code == Interrupted.exit_code \
                    else "failed"
                raise
            finally:
                outcome.duration_ms = int((time.monotonic() - started) * 1000)
                if direction == UP and outcome.applied:
                    outcome.to_revision = outcome.applied[-1]  # if the read below fails
                with suppress(psycopg.Error):  # best effort: the connection may be gone
                    outcome.to_revision = _label(self._current(plugin))
        if outcome.outcome == "interrupted":
            raise Interrupted(
                f"stopped by {self.stop.signal_name}: plugin {plugin.name!r} is at revision "
                f"{outcome.to_revision or 'base'} after applying {len(outcome.applied)} "
                "revision(s); everything done is committed, rerun to continue")
        return outcome

    def _run_with_retries(self, conn: Connection, plugin: Plugin, direction: str,
                          destination: str, script: ScriptDirectory,
                          outcome: PluginOutcome) -> bool:
        """Run the steps; on a lock conflict roll back, log the blockers, back off, retry.
        `outcome.applied` grows as each revision commits. True when a stop request ended
        the run between revisions."""
        from alembic.operations import Operations
        from alembic.runtime.migration import MigrationContext
        from sqlalchemy.exc import DBAPIError

        delays = retries.backoff_delays()
        for attempt in range(self.settings.retries + 1):
            steps = _Steps(self, plugin, direction, destination, script, outcome.applied)
            ctx = MigrationContext.configure(connection=conn, opts={
                "version_table_schema": plugin.schema,
                "transaction_per_migration": True,
                "fn": steps,
                "on_version_apply": [steps.on_applied],
                ENVIRONMENT_KEY: RevisionEnvironment(
                    plugin=plugin.name, schema=plugin.schema,
                    current_revision=steps.current_revision,
                    connect=functools.partial(self._side_connection, plugin),
                    should_stop=self.stop.is_set, log=self.log),
            })
            try:
                with Operations.context(ctx):
                    ctx.run_migrations()
            except DBAPIError as exc:
                self._record_failure(plugin, steps, direction, exc)
                code = retries.sqlstate(exc)
                if (code in retries.LOCK_CONFLICT_SQLSTATES and attempt < self.settings.retries
                        and not self.stop.is_set()):
                    delay = next(delays)
                    self._log_lock_retry(conn, plugin, steps, exc, attempt + 1, delay)
                    self.sleep(delay)
                    continue
                raise self._failure(plugin, steps, exc, attempts=attempt + 1) from None
            except MigratorError as exc:  # from migrator.backfill: already says where and why
                self._record_failure(plugin, steps, direction, exc)
                raise
            except Exception as exc:  # the revision's own Python code failed: any error type
                # A connection that broke inside an autocommit_block surfaces as SQLAlchemy's
                # complaint about the invalidated connection; report the database's error.
                cause = _database_cause(exc) if conn.invalidated else exc
                self._record_failure(plugin, steps, direction, cause)
                raise self._failure(plugin, steps, cause, attempts=1) from None
            return steps.stopped_early
        raise AssertionError("unreachable: the last attempt either returns or raises")

    def _record_failure(self, plugin: Plugin, steps: _Steps, direction: str,
                        exc: BaseException) -> None:
        if steps.current is None or steps.current in steps.applied:
            return
        rev_file = plugin.revision(steps.current)
        try:
            records.record(self.lock_conn, records.Attempt(
                plugin=plugin.name, schema=plugin.schema, revision=steps.current,
                direction=direction,
                checksum=records.checksum(rev_file.path) if rev_file else None,
                started_at=steps.started_at, finished_at=datetime.now(UTC),
                applied_by=db.host_identity(), outcome="failed", error=_message(exc)[:2000]))
        except psycopg.Error as record_error:
            self.log.warning("history.record_failed", plugin=plugin.name,
                             error=_message(record_error))

    def _log_lock_retry(self, conn: Connection, plugin: Plugin, steps: _Steps,
                        exc: BaseException, attempt: int, delay: float) -> None:
        blockers = self._blockers(conn, plugin)
        self.log.warning(
            "lock_timeout.retry", plugin=plugin.name, revision=steps.current, attempt=attempt,
            of=self.settings.retries, retry_in_s=round(delay, 2), error=_message(exc),
            blockers=[{"pid": b.pid, "application_name": b.application_name, "state": b.state,
                       "transaction_age_s": b.transaction_age_s, "query": b.query[:200]}
                      for b in blockers])

    def _blockers(self, conn: Connection | None, plugin: Plugin) -> list[locking.Blocker]:
        schemas = [plugin.schema, *(self.schemas.get(d, d) for d in plugin.depends_on)]
        try:
            exclude = [driver_connection(conn).info.backend_pid] if conn else []
            return locking.blocking_sessions(self.lock_conn, schemas=schemas,
                                             exclude_pids=exclude)
        except psycopg.Error:
            return []

    def _failure(self, plugin: Plugin, steps: _Steps, exc: BaseException, *,
                 attempts: int) -> MigrationFailed | ConnectionLost:
        revision = steps.current or "?"
        rev_file = plugin.revision(revision)
        where = f"{plugin.name!r} revision {revision}" + (
            f" ({rev_file.filename})" if rev_file else "")
        code = retries.sqlstate(exc)
        if code in retries.LOCK_CONFLICT_SQLSTATES:
            blockers = "; ".join(b.describe() for b in self._blockers(None, plugin)) or "unknown"
            message = (f"plugin {where} could not take its locks within --lock-timeout "
                       f"{self.settings.lock_timeout:g}s after {attempts} attempts "
                       f"({_message(exc)}); blocking sessions: {blockers}; end or wait for them "
                       "and rerun, nothing was half-applied")
        elif retries.connection_lost(exc):
            # Exit 4, not 1: nothing is wrong with the revision. Lost at its COMMIT, it either
            # committed or not, whole: the plugin is at a revision boundary either way.
            fate = ("committed or rolled back as a whole (the connection broke at its commit)"
                    if steps.current in steps.applied else "was rolled back")
            return ConnectionLost(
                f"plugin {where}: lost the database connection ({_message(exc)}); the revision "
                f"{fate}, the plugin is at a revision boundary: rerun once the database is "
                "reachable")
        else:
            message = (f"plugin {where} failed: {_message(exc)}; the revision was rolled back, "
                       "fix it and rerun")
        return MigrationFailed(message, plugin=plugin.name, revision=steps.current)

    # -- connections and locks ------------------------------------------------------------

    @contextmanager
    def _plugin_lock(self, plugin: Plugin) -> Iterator[None]:
        locking.acquire(self.lock_conn, plugin=plugin.name, wait=self.settings.lock_wait,
                        log=self.log, should_stop=self.stop.is_set)
        try:
            yield
        finally:
            # If the connection is gone, its session lock went with it.
            with suppress(psycopg.Error):
                locking.release(self.lock_conn, plugin=plugin.name)

    def _current(self, plugin: Plugin) -> tuple[str, ...]:
        return db.read_current_revisions(self.lock_conn, [plugin.schema]).get(plugin.schema, ())

    @contextmanager
    def _work_connection(self, plugin: Plugin) -> Iterator[Connection]:
        """A connection set up for `plugin`: its schema exists and is first on search_path,
        lock_timeout is set (only now: the advisory lock is held) and commits are async."""

        if self._engine is None:
            self._engine = db.sqlalchemy_engine(self.url, timeout=self.settings.connect_timeout)
        from sqlalchemy.exc import DBAPIError

        try:
            if self._conn is None or self._conn.invalidated or self._conn.closed:
                # Its first connection also runs SQLAlchemy's dialect set-up queries.
                self._conn = self._engine.connect()
            conn = self._conn
            self._set_up(conn, plugin)
        except DBAPIError as exc:
            raise db.database_error(exc) from exc
        try:
            yield conn
        except BaseException as exc:
            if conn.in_transaction():
                with suppress(Exception):  # the connection may be the thing that broke
                    conn.rollback()
            if isinstance(exc, DBAPIError):  # outside a revision (a stamp): migrator's own
                raise db.database_error(exc) from exc
            raise

    def _set_up(self, conn: Connection, plugin: Plugin) -> None:
        raw = driver_connection(conn)
        before, after = session_setup(plugin, lock_timeout=self.settings.lock_timeout,
                                      role=None)
        # Each group is one round trip: statements without parameters may share an execute.
        raw.execute(sql.SQL("; ").join(before))
        if self.settings.isolate_roles:
            from migrator import roles

            role = roles.prepare(raw, plugin, self.schemas)
            _, after = session_setup(plugin, lock_timeout=self.settings.lock_timeout, role=role)
        raw.execute(sql.SQL("; ").join(after))
        raw.commit()  # on the driver: SQLAlchemy did not see these statements begin a transaction


def session_setup(plugin: Plugin, *, lock_timeout: float, role: str | None
                  ) -> tuple[list[sql.Composable], list[sql.Composable]]:
    """What migrator runs before a plugin's revisions, in its own transaction: the statements
    before the plugin's role is prepared, and those after. `--sql` renders the same list."""
    before = [
        sql.SQL("RESET ROLE"),  # the previous plugin's, under --isolate-roles
        sql.SQL("SET lock_timeout = {}").format(sql.Literal(f"{int(lock_timeout * 1000)}ms")),
        # Commits need not wait for their WAL flush; each plugin's last revision's does.
        sql.SQL("SET synchronous_commit = off"),
        sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(plugin.schema)),
    ]
    after: list[sql.Composable] = (
        [sql.SQL("SET ROLE {}").format(sql.Identifier(role))] if role else [])
    after += [
        sql.SQL("SET search_path TO {}, public").format(sql.Identifier(plugin.schema)),
        # Alembic's own version table DDL, created here so that each revision's transaction
        # holds that revision's work and nothing else.
        sql.SQL("CREATE TABLE IF NOT EXISTS {} (version_num VARCHAR(32) NOT NULL, "
                "CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num))").format(
                    sql.Identifier(plugin.schema, db.VERSION_TABLE)),
    ]
    return before, after


def driver_connection(conn: Connection) -> psycopg.Connection[Any]:
    """The psycopg connection under a SQLAlchemy connection."""
    return cast("psycopg.Connection[Any]", conn.connection.driver_connection)


def _label(revisions: tuple[str, ...]) -> str | None:
    return ",".join(revisions) if revisions else None


def _database_cause(exc: BaseException) -> BaseException:
    """The psycopg error behind `exc` (itself, or in its chain of causes), else `exc`."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(getattr(seen, "orig", None) or seen, psycopg.Error):
            return seen
        seen = seen.__cause__ or seen.__context__
    return exc


def _message(exc: BaseException) -> str:
    """The database's own message (first line), password-free."""
    original = getattr(exc, "orig", None) or exc
    text = str(original).strip().splitlines()
    return redact(text[0] if text else type(exc).__name__)
