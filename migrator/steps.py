"""Run one revision of one plugin, contained: the only module that touches Alembic's runtime.

A revision runs as under plain Alembic (an `EnvironmentContext` with a real `Config`, `op` and
`context` installed, steps in exactly Alembic's order), on migrator's work session, which holds
the plugin's lock (`db.WorkSession`). Whatever the revision does, the report and the database
agree afterwards, judged by fact rather than by reading its source:

- it starts from migrator's own session settings (`db.session_settings`), in a transaction
  whose id is noted first;
- anything it raises — `SystemExit` and `KeyboardInterrupt` included — fails it: rolled back,
  not stamped, a failed history row;
- when it returns, the fate of that transaction decides: still open, the revision was atomic
  and its stamp and history row commit with it; committed by the revision itself
  (`op.get_bind().commit()`, `COMMIT`, an `autocommit_block`), its work is kept and the stamp
  commits in the transaction that follows (`atomic` false); rolled back by the revision, it
  fails;
- it is never stamped while an index in its plugin's schema is INVALID.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql

from migrator import db, records, retries, stamps
from migrator.connections import host_identity
from migrator.environment import ENVIRONMENT_KEY, RevisionEnvironment
from migrator.errors import ConnectionLost, Interrupted, MigrationFailed, MigratorError
from migrator.failures import LockConflict, RevisionBroke, database_cause, describe
from migrator.logs import first_line, get_logger, redact
from migrator.scripts import alembic_config, load_script, revision_checksum

if TYPE_CHECKING:
    from alembic.runtime.environment import EnvironmentContext
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory
    from sqlalchemy.engine import Connection

    from migrator.discovery import Plugin

IDLE = psycopg.pq.TransactionStatus.IDLE


@dataclass(slots=True)
class Applied:
    """A revision that ran and is stamped."""

    revision: str
    message: str
    atomic: bool
    seconds: float


def sqlalchemy_connection(raw: psycopg.Connection[Any]) -> Connection:
    """A SQLAlchemy connection over migrator's own psycopg session (no second session: the
    plugin's lock lives on this one). Left idle, outside any transaction."""
    from sqlalchemy import create_engine
    from sqlalchemy.pool import StaticPool

    engine = create_engine("postgresql+psycopg://", creator=lambda: raw, poolclass=StaticPool,
                           pool_reset_on_return=None)
    conn = engine.connect()  # the dialect's first-connect queries run here
    if conn.in_transaction():
        conn.rollback()
    if raw.info.transaction_status != IDLE:
        raw.rollback()
    return conn


@dataclass(slots=True)
class _Watch:
    """What the running revision did that its transaction's fate cannot tell."""

    autocommit_blocks: int = 0
    committed_first: bool = False  # an autocommit block entered after the revision committed


@dataclass(slots=True)
class PluginSteps:
    """Alembic bound to one plugin on one work session: plans the steps, runs each one
    contained, stamps it, records it."""

    plugin: Plugin
    session: db.WorkSession
    sa_conn: Connection
    safe_url: str
    environment: RevisionEnvironment
    direction: records.Direction = records.Direction.UP
    script: ScriptDirectory | None = None
    heads: set[str] = field(default_factory=set)
    running: str | None = None
    # Records a failed attempt on another connection when the work session is gone.
    record_elsewhere: Callable[[records.Attempt], None] | None = None
    _env: EnvironmentContext | None = None
    _ctx: MigrationContext | None = None
    _watch: _Watch = field(default_factory=_Watch)
    _start_script: bytes | None = None

    @contextmanager
    def installed(self, current: tuple[str, ...]) -> Iterator[PluginSteps]:
        """Alembic's `context` and `op` for this plugin, as `env.py` would set them up."""
        from alembic.operations import Operations
        from alembic.runtime.environment import EnvironmentContext

        script = self.script or load_script(self.plugin)
        self.script = script
        env = EnvironmentContext(alembic_config(self.plugin, self.safe_url), script)
        options: dict[str, Any] = {ENVIRONMENT_KEY: self.environment}
        env.configure(connection=self.sa_conn,
                      version_table=getattr(self.plugin, "version_table", db.VERSION_TABLE),
                      version_table_schema=self.plugin.schema, transaction_per_migration=True,
                      **options)
        ctx = env.get_context()
        self._watch_autocommit_blocks(ctx)
        self._env, self._ctx, self.heads = env, ctx, set(current)
        try:
            with env, Operations.context(ctx):
                yield self
        finally:
            self._env = self._ctx = None

    def _watch_autocommit_blocks(self, ctx: MigrationContext) -> None:
        original = ctx.autocommit_block
        watch = self._watch
        raw = self.session.conn

        @contextmanager
        def counted() -> Iterator[None]:
            watch.autocommit_blocks += 1
            # Entered with migrator's transaction already ended (`op.get_bind().commit()`,
            # `COMMIT`): the revision committed by itself first, which deserves the warning.
            transaction = ctx._transaction
            if (transaction is None or not transaction.is_active
                    or raw.info.transaction_status != psycopg.pq.TransactionStatus.INTRANS):
                watch.committed_first = True
            with original():
                yield

        ctx.autocommit_block = counted  # type: ignore[method-assign]  # per-context wrapper

    # -- Alembic's order ----------------------------------------------------------------------

    def upgrade_steps(self, target: str | None) -> list[Any]:
        """Alembic's own steps from the current heads to `target` (None: the heads)."""
        assert self.script is not None
        return upgrade_walk(self.script, target, tuple(self.heads))

    def downgrade_steps(self, destination: str) -> list[Any]:
        assert self.script is not None
        return downgrade_walk(self.script, destination, tuple(self.heads))

    @staticmethod
    def revision_of(step: Any) -> str:
        return str(step.revision.revision)

    # -- one step, contained ------------------------------------------------------------------

    def run(self, step: Any, *, last: bool = False) -> Applied:
        """Run one step and stamp it; raise LockConflict (retryable), MigrationFailed,
        ConnectionLost or Interrupted otherwise. The session is at a revision boundary after
        any outcome. `last`: the plugin's last step, whose commit waits for the WAL flush."""
        assert self._ctx is not None
        revision = self.revision_of(step)
        self.running = revision
        started_at, clock = datetime.now(UTC), time.monotonic()
        self._watch.autocommit_blocks = 0
        self._watch.committed_first = False
        raw = self.session.conn
        try:
            self._ctx._transaction = self.sa_conn.begin()
            first_xid = self._begin(raw)
            step.migration_fn()
            atomic = self._finish(raw, step, revision, started_at, first_xid, last)
        except BaseException as exc:
            self._abandon(raw)
            raise self._failure(revision, started_at, exc) from None
        finally:
            self._ctx._transaction = None
        seconds = time.monotonic() - clock
        if self._ctx.connection is not self.sa_conn:  # pragma: no cover - Alembic restores it
            self._ctx.connection = self._ctx.impl.connection = self.sa_conn
        rev_file = self.plugin.revision(revision)
        return Applied(revision, rev_file.message if rev_file else "", atomic, seconds)

    def _begin(self, raw: psycopg.Connection[Any]) -> str:
        """BEGIN (psycopg's), migrator's settings and the transaction's id: in the revision's
        transaction (the settings persist when it commits; a retry sets them again)."""
        if self._start_script is None:  # the same for every revision of the plugin
            self._start_script = db.session_settings_script(
                self.plugin.schema, lock_timeout=self.session.lock_timeout,
                returning=sql.SQL("pg_catalog.pg_current_xact_id()::text")).as_bytes(raw)
        cursor = raw.execute(self._start_script)
        while cursor.nextset():  # the script's last result is the SELECT
            pass
        row = cursor.fetchone()
        assert row is not None
        return str(row[-1])

    def _finish(self, raw: psycopg.Connection[Any], step: Any, revision: str,
                started_at: datetime, first_xid: str, last: bool) -> bool:
        """Judge what the revision did to migrator's transaction, stamp it and record it,
        commit: the judgement, the stamp and the history row in one round trip, the commit in
        another. True when the revision ran atomically. Raises when it rolled migrator's
        transaction back, left it failed, or left an INVALID index: the caller rolls back,
        stamp included."""
        if raw.info.transaction_status == psycopg.pq.TransactionStatus.INERROR:
            raise RevisionBroke("left its transaction failed (it caught a database error and "
                                 "went on)")
        stamp = stamps.statement(step, self.heads, db.version_table(self.plugin))
        attempt = records.Attempt(
            plugin=self.plugin.name, schema=self.plugin.schema, revision=revision,
            direction=self.direction, checksum=revision_checksum(self.plugin, revision),
            started_at=started_at, finished_at=datetime.now(UTC), applied_by=host_identity(),
            outcome=records.AttemptOutcome.APPLIED)
        with raw.pipeline():
            fate_cursor = raw.execute(_FATE, {"xid": first_xid, "schema": self.plugin.schema})
            stamp_cursor = raw.execute(stamp[0], stamp[1]) if stamp else None
            if stamp is not None:
                records.record(raw, attempt, first_xid=first_xid)
                if self.direction is records.Direction.DOWN:
                    records.forget_backfills(raw, self.plugin.name, revision)
                if last:
                    # Earlier commits skipped the WAL flush; this one waits for it, which (WAL
                    # being sequential) makes all of them durable before the lock is released.
                    raw.execute("SET LOCAL synchronous_commit TO on")
        row = fate_cursor.fetchone()
        assert row is not None
        atomic = self._judge(revision, *row)
        if stamp is None:  # a merge or a branch point: Alembic's own bookkeeping
            self._stamp_by_alembic(raw, step, attempt, atomic, last)
        elif stamp_cursor is not None and stamp_cursor.rowcount != 1:
            raise RevisionBroke(f"left the version table {db.version_table(self.plugin)} "
                                 "not at the revision it started from (changed by another "
                                 "session?)")
        else:
            stamps.move_heads(step, self.heads)
        self._commit(raw)
        return atomic

    def _judge(self, revision: str, fate: str, invalid: list[str],
               extensions: list[str]) -> bool:
        if fate == "aborted":
            raise RevisionBroke("rolled back migrator's transaction (ROLLBACK); whatever it "
                                 "did after that was rolled back too")
        if extensions:
            listed = ", ".join(f'"{name}"' for name in extensions)
            raise RevisionBroke(
                f"created extension(s) {', '.join(extensions)} in the plugin's own schema; "
                f"declare them in plugin.toml (extensions = [{listed}]): migrator creates them "
                "in public, where every plugin sees them")
        if invalid:
            raise RevisionBroke(f"left INVALID index(es) {', '.join(invalid)} (a concurrent "
                                 "build that failed); the next run drops and rebuilds them")
        atomic = bool(fate == "in progress")
        if not atomic and (not self._watch.autocommit_blocks or self._watch.committed_first):
            get_logger().warning(
                "revision.not_atomic", plugin=self.plugin.name, revision=revision,
                detail="the revision committed migrator's transaction itself; its work is "
                       "kept and stamped, but a failure inside it would have left it half "
                       "applied — use op.get_context().autocommit_block() instead")
        return atomic

    def _stamp_by_alembic(self, raw: psycopg.Connection[Any], step: Any,
                          attempt: records.Attempt, atomic: bool, last: bool) -> None:
        from alembic.runtime.migration import HeadMaintainer

        assert self._ctx is not None
        maintainer = HeadMaintainer(self._ctx, set(self.heads))
        maintainer.update_to_step(step)
        records.record(raw, dataclasses.replace(attempt, atomic=atomic))
        if self.direction is records.Direction.DOWN:
            records.forget_backfills(raw, self.plugin.name, attempt.revision)
        if last:
            raw.execute("SET LOCAL synchronous_commit TO on")
        self.heads = set(maintainer.heads)

    def _commit(self, raw: psycopg.Connection[Any]) -> None:
        if self.sa_conn.in_transaction():
            self.sa_conn.commit()
        if raw.info.transaction_status != IDLE:
            raw.commit()

    def _abandon(self, raw: psycopg.Connection[Any]) -> None:
        """Roll back whatever is open, on both layers; a broken connection is left broken."""
        with suppress(Exception):
            if self.sa_conn.in_transaction():
                self.sa_conn.rollback()
        with suppress(psycopg.Error):
            if not raw.closed and raw.info.transaction_status != IDLE:
                raw.rollback()

    def _failure(self, revision: str, started_at: datetime,
                 exc: BaseException) -> BaseException:
        raw = self.session.conn
        cause = database_cause(exc)
        if isinstance(cause, MigratorError) and not isinstance(cause, MigrationFailed):
            return cause  # already says what and where (a lost connection, a stop)
        if raw.closed or retries.connection_lost(cause):
            if self.record_elsewhere is not None:
                self.record_elsewhere(self._attempt(revision, started_at, describe(cause)))
            return ConnectionLost(
                f"plugin {self.plugin.name!r} revision {revision}: lost the database "
                f"connection, and with it the plugin's lock ({first_line(cause)}); the "
                "revision was rolled back (or, had the connection broken at its commit, "
                "committed whole): the plugin is at a revision boundary, rerun")
        if self.environment.forced():
            return Interrupted(f"plugin {self.plugin.name!r} revision {revision}: stopped by a "
                               "second signal; the revision was rolled back, rerun to continue")
        what = describe(cause)
        self.record_failure(revision, started_at, what)
        if retries.sqlstate(cause) in retries.LOCK_CONFLICT_SQLSTATES:
            return LockConflict(revision, cause)
        rev_file = self.plugin.revision(revision)
        where = f" ({rev_file.filename})" if rev_file else ""
        if isinstance(cause, MigrationFailed):  # a backfill's own account
            return cause
        return MigrationFailed(
            f"plugin {self.plugin.name!r} revision {revision}{where} failed: {what}; the "
            "revision was rolled back and is not stamped, fix it and rerun",
            plugin=self.plugin.name, revision=revision)

    def record_failure(self, revision: str, started_at: datetime, error: str) -> None:
        """A failed attempt's history row, after the rollback, in a transaction of its own."""
        try:
            self.session.reset(self.plugin.schema)
            with self.session.autocommit() as conn:
                records.record(conn, self._attempt(revision, started_at, error))
        except (psycopg.Error, MigratorError) as record_error:
            get_logger().warning("history.record_failed", plugin=self.plugin.name,
                                 revision=revision, error=first_line(record_error))

    def _attempt(self, revision: str, started_at: datetime, error: str) -> records.Attempt:
        return records.Attempt(
            plugin=self.plugin.name, schema=self.plugin.schema, revision=revision,
            direction=self.direction, checksum=revision_checksum(self.plugin, revision),
            started_at=started_at, finished_at=datetime.now(UTC), applied_by=host_identity(),
            outcome=records.AttemptOutcome.FAILED, error=redact(error)[:2000])

    def stamp(self, revision: str) -> None:
        """Record `revision` (or `base`) as the plugin's state without running anything."""
        assert self._ctx is not None and self.script is not None
        raw = self.session.conn
        started_at = datetime.now(UTC)
        try:
            self._ctx._transaction = self.sa_conn.begin()
            self._ctx.stamp(self.script, revision)
            records.record(raw, records.Attempt(
                plugin=self.plugin.name, schema=self.plugin.schema, revision=revision,
                direction=records.Direction.STAMP,
                checksum=revision_checksum(self.plugin, revision), started_at=started_at,
                finished_at=datetime.now(UTC), applied_by=host_identity(),
                outcome=records.AttemptOutcome.APPLIED))
            self._commit(raw)
        except BaseException:
            self._abandon(raw)
            raise
        finally:
            self._ctx._transaction = None


def upgrade_walk(script: ScriptDirectory, target: str | None, heads: tuple[str, ...]
                 ) -> list[Any]:
    """The steps `alembic upgrade` takes from `heads` to `target` (None: the heads), in
    exactly Alembic's order (branches and merges included): online and offline alike; merge
    stamps in a fixed order (`stamps.in_declared_order`)."""
    current: Any = heads  # Alembic accepts the heads tuple (annotated str)
    return [stamps.in_declared_order(s) for s in script._upgrade_revs(target or "heads", current)]


def downgrade_walk(script: ScriptDirectory, destination: str, heads: tuple[str, ...]
                   ) -> list[Any]:
    """The steps `alembic downgrade` takes from `heads` to `destination` (a revision, -N,
    base)."""
    current: Any = heads
    return [stamps.in_declared_order(s) for s in script._downgrade_revs(destination, current)]


# The fate of the transaction a revision started in, the INVALID indexes of its schema, and
# the extensions in it (declared ones live in public; one in a plugin's schema is a mistake:
# the next plugin's CREATE EXTENSION IF NOT EXISTS would find it and not see its types).
# Runs after every revision, never kept prepared (a DDL result empties psycopg's cache), so
# written to plan cheaply: the schema resolved by to_regnamespace, not joined (planning the
# three-way join cost the server over a third of a millisecond a revision).
_FATE = (
    "SELECT pg_catalog.pg_xact_status(%(xid)s::xid8)::text, ARRAY(SELECT "
    "pg_catalog.quote_ident(%(schema)s) || '.' || pg_catalog.quote_ident(c.relname) FROM "
    "pg_catalog.pg_class c WHERE c.oid IN (SELECT i.indexrelid FROM pg_catalog.pg_index i "
    "WHERE NOT i.indisvalid) AND c.relnamespace = "
    "pg_catalog.to_regnamespace(pg_catalog.quote_ident(%(schema)s)) ORDER BY 1), "
    "ARRAY(SELECT e.extname FROM pg_catalog.pg_extension e WHERE e.extnamespace = "
    "pg_catalog.to_regnamespace(pg_catalog.quote_ident(%(schema)s)) "
    "AND %(schema)s <> 'public' ORDER BY 1)")
