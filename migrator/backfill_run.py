"""Batched backfills: `migrator.backfill(...)` (this module, exported by the package), called
from a revision's `upgrade()`.

A backfill walks a table in key order (key ranges on a dense integer key, keyset pagination
otherwise, never OFFSET: `migrator.backfill_ranges`), one short transaction per batch on the
work session: lock the checkpoint row in `migrator.backfill_progress`,
update the batch, move the checkpoint, commit. A killed, disconnected or stopped run resumes
after the last committed batch and every row is updated exactly once. Transient errors are
retried per batch (`migrator.retries`); the batch size adapts toward a target duration
(`BatchSizer`). The runner and this module meet through Alembic's migration context
(`migrator.environment`); neither imports the other. The statements: `migrator.backfill_sql`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from migrator.backfill_spec import (
    DEFAULT_TARGET_BATCH_TIME,
    MAX_BATCH,
    MIN_BATCH,
    RENDER_HOOK,
    BackfillSpec,
    BatchSizer,
    validate,
)
from migrator.environment import RevisionEnvironment, current_environment
from migrator.errors import BackfillError, ConnectionLost, Interrupted
from migrator.records import BackfillStatus

__all__ = ["DEFAULT_TARGET_BATCH_TIME", "MAX_BATCH", "MIN_BATCH", "BackfillError",
           "BackfillResult", "BatchSizer", "backfill"]


@dataclass(frozen=True, slots=True)
class BackfillResult:
    name: str
    rows_done: int
    batches_done: int
    seconds: float


def backfill(
    table: str,
    *,
    set: str | None = None,
    transform: Callable[[list[dict[str, Any]]], Iterable[Mapping[str, Any] | None]] | None = None,
    columns: Sequence[str] = (),
    where: str | None = None,
    key: str | Sequence[str] = "id",
    params: Mapping[str, Any] | None = None,
    name: str | None = None,
    batch_size: int | None = None,
    pause: float | str = 0,
    target_batch_time: float | str | None = None,
    statement_timeout: float | str = "30s",
    max_retries: int = 10,
) -> BackfillResult | None:
    """Update every row of `table` in short batches, resumably and exactly once.

    Call it from a revision's ``upgrade()``, alone: a backfill belongs in a revision of its
    own. Calling it after schema changes in the same revision fails that revision (it is
    rolled back) — move the schema change into the previous revision.

    Args:
        table: the table, unqualified (the plugin's schema) or ``"schema.table"``.
        set: SQL assignments, e.g. ``"drug_name = payload->'drug'->>'name'"``; may use
            ``:name`` parameters bound from ``params``. Exactly one of ``set`` / ``transform``.
        transform: a Python callable for changes SQL cannot express. It receives a batch of
            rows (dicts of ``key`` plus ``columns``) and returns, in the same order, one dict
            per row of the new column values (or None to leave the row alone).
        columns: the columns ``transform`` reads.
        where: SQL condition limiting the rows to update, e.g. ``"drug_name IS NULL"``.
        key: a unique, indexed column (or tuple of columns) walked in ascending order.
        params: values for ``:name`` parameters in ``set`` and ``where``.
        name: the backfill's name in ``migrator.backfill_progress`` (default: the table name).
        batch_size: rows per batch. Given alone, every batch has exactly this many keys (the
            last one fewer; on a dense integer key, a key range this many integers wide: at
            most this many rows); given with ``target_batch_time``, the first batch has this many
            and later ones adapt. Neither given: migrator's default start (1000) adapting
            toward 50 ms a batch.
        pause: seconds (or ``"250ms"``) to sleep between batches, to leave the server room.
        target_batch_time: adapt the batch size, gradually, so a batch takes about this long.
            Without it and without ``batch_size``, migrator aims at 50 ms: batches long enough
            to run at about the speed of one big UPDATE, short enough that a concurrent write
            waiting on a batch's row locks waits well under 100 ms.
        statement_timeout: per batch; a batch that hits it is split in half and retried.
        max_retries: retries per batch of transient errors (serialization failure, deadlock,
            lock or statement timeout, server shutdown, lost connection — reconnecting).

    Guarantees: the walk is bounded by the largest key present when it first starts; each
    batch's update and its checkpoint commit together, so a killed or interrupted run resumes
    after the last committed batch and every row is updated once. The revision is stamped
    only when the backfill completes. Progress is logged as ``backfill.batch`` events and
    shown by ``migrator status``.
    """
    spec = validate(table, set, transform, columns, where, key, params, name, batch_size,
                     pause, target_batch_time, statement_timeout, max_retries)
    from alembic import op

    context = op.get_context()
    if getattr(context, "as_sql", False):
        hook = getattr(context, "opts", {}).get(RENDER_HOOK)
        if hook is None:
            raise BackfillError(
                f"backfill({table!r}) renders offline only under migrator (`migrator upgrade "
                "--sql`), which writes it as SQL that walks every row")
        hook(spec.describe())
        with context.autocommit_block():  # as when it runs: outside the revision's transaction
            # A placeholder: migrator.sql_output writes the walk in its place.
            context.impl.static_output(f"-- migrator backfill {spec.name!r}")
        return None
    environment = current_environment(context)
    if environment is None:
        raise BackfillError(
            f"backfill({table!r}) runs only under migrator (it needs migrator's progress "
            "records); apply this revision with: migrator upgrade")
    _refuse_after_schema_changes(context, spec, environment)
    with context.autocommit_block():
        return _Walk(spec, environment).run()


def _refuse_after_schema_changes(context: Any, spec: BackfillSpec,
                                 environment: RevisionEnvironment) -> None:
    """A backfill must not share a revision with DDL: the DDL's locks would be held for the
    whole walk. A transaction that changed anything holds a lock stronger than a reader's
    (ACCESS SHARE) on what it changed; migrator's own transaction id alone does not count."""
    from sqlalchemy import text

    wrote = context.connection.execute(text(
        "SELECT EXISTS (SELECT FROM pg_catalog.pg_locks WHERE pid = pg_backend_pid() "
        "AND granted AND locktype IN ('relation', 'object') AND mode <> 'AccessShareLock')"
    )).scalar()
    if wrote:
        raise BackfillError(
            f"plugin {environment.plugin!r} revision {environment.current_revision()}: "
            f"backfill({'.'.join(spec.table)!r}) follows schema changes in the same revision; "
            "move the schema change into a revision of its own before this one")


class _Walk:
    """One backfill run: resume from the checkpoint, then batch until done."""

    def __init__(self, spec: BackfillSpec, environment: RevisionEnvironment,
                 *, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.spec, self.env, self._sleep, self.clock = spec, environment, sleep, clock
        self.revision = environment.current_revision() or "?"
        self.log = environment.log
        self.conn: Any = None
        self.sizer = BatchSizer(spec.batch_size, spec.target_batch_time)
        self.state: Any = None
        self.rate: float | None = None  # rows per second, smoothed over batches
        self.attempts = 0  # of the current batch

    def run(self) -> BackfillResult:
        from migrator import backfill_sql

        started = self.clock()
        self._connect()
        try:
            self.statements = backfill_sql.Statements(self.spec, self.conn)
            self.state = self._start_with_retries()
            while self.state.status != BackfillStatus.DONE:
                self._check_stop()
                self.state = self._batch_with_retries()
                if self.spec.pause and self.state.status != BackfillStatus.DONE:
                    self.sleep(self.spec.pause)
        finally:
            self._close()
        seconds = self.clock() - started
        self.log.info("backfill.done", plugin=self.env.plugin, revision=self.revision,
                      backfill=self.spec.name, rows_done=self.state.rows_done,
                      batches=self.state.batches_done, seconds=round(seconds, 3))
        return BackfillResult(self.spec.name, self.state.rows_done, self.state.batches_done,
                              seconds)

    def sleep(self, seconds: float) -> None:
        """Sleep, in slices, ending early when a stop is requested."""
        deadline = self.clock() + seconds
        while not self.env.should_stop():
            left = deadline - self.clock()
            if left <= 0:
                return
            self._sleep(min(left, 0.1))

    def _check_stop(self) -> None:
        if self.env.should_stop():
            if self.state is not None and self.conn is not None and not self.conn.closed:
                import psycopg

                with contextlib.suppress(psycopg.Error):  # best effort: resumes either way
                    self.statements.mark(self.state, "paused")
            raise Interrupted(
                f"plugin {self.env.plugin!r} revision {self.revision}: backfill "
                f"{self.spec.name!r} stopped after {self.state.rows_done if self.state else 0} "
                f"rows; progress is saved, rerun to resume")

    # -- state ------------------------------------------------------------------------------

    def _start(self) -> Any:
        from migrator import backfill_sql

        state = backfill_sql.start(self.conn, self.env.plugin, self.revision, self.spec)
        if state.status == BackfillStatus.DONE:
            self.log.info("backfill.already_done", plugin=self.env.plugin,
                          revision=self.revision, backfill=self.spec.name,
                          rows_done=state.rows_done)
        elif state.batches_done:
            self.log.info("backfill.resuming", plugin=self.env.plugin, revision=self.revision,
                          backfill=self.spec.name, rows_done=state.rows_done,
                          batches_done=state.batches_done, last_key=state.last_key)
        return state

    def _start_with_retries(self) -> Any:
        """Read or create the checkpoint; retried like a batch (a killed run's batch may still
        hold the checkpoint row in its orphaned session until it notices)."""
        import psycopg

        from migrator import retries

        retrying = retries.batch_retrying(max_retries=self.spec.max_retries,
                                          before_retry=self._before_retry, sleep=self.sleep)
        try:
            for attempt in retrying:
                with attempt:
                    return self._start()
        except psycopg.Error as exc:
            raise BackfillError(
                f"plugin {self.env.plugin!r} revision {self.revision}: backfill "
                f"{self.spec.name!r} could not read its checkpoint in "
                f"migrator.backfill_progress: {_message(exc)}; rerun to resume") from None
        raise AssertionError("unreachable: tenacity either returns or re-raises")

    def _batch_with_retries(self) -> Any:
        import psycopg

        from migrator import retries

        retrying = retries.batch_retrying(max_retries=self.spec.max_retries,
                                          before_retry=self._before_retry, sleep=self.sleep)
        try:
            for attempt in retrying:
                self.attempts = attempt.retry_state.attempt_number
                with attempt:
                    return self._batch(self.state)
        except psycopg.Error as exc:
            self._mark_failed()
            raise BackfillError(
                f"plugin {self.env.plugin!r} revision {self.revision}: backfill "
                f"{self.spec.name!r} failed on the batch of up to {self.sizer.size} rows after "
                f"key {_key_text(self.state.last_key)} (the walk ends at key "
                f"{_key_text(self.state.upper_key)}) after {self.attempts} attempt(s): "
                f"{_message(exc)}; progress is saved ({self.state.rows_done} rows "
                "done), fix the cause and rerun to resume") from None
        raise AssertionError("unreachable: tenacity either returns or re-raises")

    def _batch(self, state: Any) -> Any:
        size = self.sizer.size
        self._reset()
        began = self.clock()
        new_state = self.statements.run_batch(state, size)
        elapsed = self.clock() - began
        self.state = new_state
        if new_state.moved:
            # A batch this run did not see commit: a killed run's orphaned backend, or a
            # commit whose reply was lost with the connection.
            self.log.info("backfill.checkpoint_moved", plugin=self.env.plugin,
                          revision=self.revision, backfill=self.spec.name,
                          rows_done=new_state.rows_done, last_key=new_state.last_key)
        if new_state.moved and new_state.batch_keys == 0:
            return new_state  # nothing ran now: the next batch starts where that one ended
        rate = new_state.batch_rows / elapsed if elapsed > 0 else 0.0
        self.rate = rate if self.rate is None else 0.7 * self.rate + 0.3 * rate
        self.log.info(
            "backfill.batch", plugin=self.env.plugin, revision=self.revision,
            backfill=self.spec.name, batch=new_state.batches_done, rows=new_state.batch_rows,
            keys=new_state.batch_keys, batch_size=size,
            walk="key_range" if new_state.key_range else "keyset", rows_done=new_state.rows_done,
            last_key=new_state.last_key, ms=round(elapsed * 1000, 1), rows_per_s=int(rate),
            estimated_total=new_state.estimated_total, total_rows=new_state.total_rows,
            eta_s=_eta(new_state.rows_done, new_state.estimated_total, self.rate))
        self.sizer.observe(new_state.batch_keys, elapsed)
        return new_state

    def _before_retry(self, attempt: int, exc: BaseException, delay: float) -> None:
        from migrator import retries

        self._check_stop()
        code = retries.sqlstate(exc)
        action = "retry"
        if code == retries.QUERY_CANCELED:
            self.sizer.split()
            action = "split"
        elif code in retries.LOCK_CONFLICT_SQLSTATES and self.spec.target_batch_time:
            self.sizer.contended()
            action = "shrink"
        if retries.connection_lost(exc) or self.conn is None or self.conn.closed:
            raise self._lost(exc)
        self.log.warning("backfill.retry", plugin=self.env.plugin, revision=self.revision,
                         backfill=self.spec.name, attempt=attempt, of=self.spec.max_retries,
                         action=action, batch_size=self.sizer.size,
                         last_key=self.state.last_key if self.state else None,
                         retry_in_s=round(delay, 2), error=_message(exc), sqlstate=code)

    def _mark_failed(self) -> None:
        import psycopg

        if self.conn is None or self.conn.closed:
            return
        with contextlib.suppress(psycopg.Error):  # best effort: the checkpoint is intact
            self.statements.mark(self.state, "failed")

    # -- connection -------------------------------------------------------------------------

    def _connect(self) -> None:
        """The work session, which holds the plugin's lock: a batch runs only while it is
        held. Lost, it is not replaced (the lock went with it): the backfill stops, exit 4,
        and the next run resumes from the checkpoint."""
        self.conn = self.env.session()
        if self.conn.closed:
            raise self._lost(None)
        self._reset()

    def _reset(self) -> None:
        """Each batch starts from migrator's own settings, plus the batch's statement_timeout."""
        self.env.reset()
        self.conn.execute("SELECT set_config('statement_timeout', %s, false)",
                          (f"{max(1, int(self.spec.statement_timeout * 1000))}ms",))

    def _lost(self, exc: BaseException | None) -> ConnectionLost:
        cause = f" ({_message(exc)})" if exc is not None else ""
        done = self.state.rows_done if self.state else 0
        return ConnectionLost(
            f"plugin {self.env.plugin!r} revision {self.revision}: backfill "
            f"{self.spec.name!r} lost the database connection, and with it the plugin's "
            f"lock{cause}; {done} rows are done and checkpointed, rerun to resume")

    def _close(self) -> None:
        self.conn = None  # the work session stays open: it is the runner's


def _key_text(key: Any) -> str:
    if key is None:
        return "(start)"
    return "(" + ", ".join(str(k) for k in key) + ")"


def _eta(done: int, total: int | None, rate: float) -> float | None:
    if total is None or rate <= 0 or total <= done:
        return None
    return round((total - done) / rate, 1)


def _message(exc: BaseException) -> str:
    from migrator.logs import redact

    text = str(exc).strip().splitlines()
    return redact(text[0] if text else type(exc).__name__)
