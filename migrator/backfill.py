"""Batched backfills: `migrator.backfill(...)`, called from a revision's `upgrade()`.

A backfill walks a table in key order (keyset pagination, never OFFSET), one short statement
per batch. Each batch's UPDATE and its checkpoint in `migrator.backfill_progress` are one
statement, so they commit together: a killed run resumes after the last committed batch and
every row is updated exactly once. The runner and this module meet through Alembic's migration
context (`migrator.environment`); neither imports the other.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from migrator.config import parse_duration
from migrator.environment import RevisionEnvironment, current_environment
from migrator.errors import Interrupted, MigratorError

MIN_BATCH = 10
MAX_BATCH = 100_000
# How far one adjustment may move the batch size: gradual, like a controller, not a jump.
MAX_GROWTH, MAX_SHRINK = 1.5, 0.5
PROGRESS_TABLE = ("migrator", "backfill_progress")


class BackfillError(MigratorError):
    """A backfill was called wrongly, or a batch failed past its retries (exit 1)."""

    exit_code = 1


@dataclass(frozen=True, slots=True)
class BackfillResult:
    name: str
    rows_done: int
    batches_done: int
    seconds: float


@dataclass(frozen=True, slots=True)
class _Spec:
    """The validated arguments, identifiers split, durations in seconds."""

    table: tuple[str, ...]
    key: tuple[str, ...]
    set: str | None
    transform: Callable[[list[dict[str, Any]]], Iterable[Mapping[str, Any] | None]] | None
    columns: tuple[str, ...]
    where: str | None
    params: Mapping[str, Any]
    name: str
    batch_size: int
    pause: float
    target_batch_time: float | None
    statement_timeout: float
    max_retries: int


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
    batch_size: int = 1000,
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
        batch_size: rows per batch (the starting size when ``target_batch_time`` is set).
        pause: seconds (or ``"250ms"``) to sleep between batches, to leave the server room.
        target_batch_time: adapt the batch size so a batch takes about this long.
        statement_timeout: per batch; a batch that hits it is split in half and retried.
        max_retries: retries per batch of transient errors (serialization failure, deadlock,
            lock or statement timeout, server shutdown, lost connection — reconnecting).

    Guarantees: the walk is bounded by the largest key present when it first starts; each
    batch's update and its checkpoint commit together, so a killed or interrupted run resumes
    after the last committed batch and every row is updated once. The revision is stamped
    only when the backfill completes. Progress is logged as ``backfill.batch`` events and
    shown by ``migrator status``.
    """
    spec = _validate(table, set, transform, columns, where, key, params, name, batch_size,
                     pause, target_batch_time, statement_timeout, max_retries)
    from alembic import op

    context = op.get_context()
    if getattr(context, "as_sql", False):
        context.impl.static_output(render_sql(spec))
        return None
    environment = current_environment(context)
    if environment is None:
        raise BackfillError(
            f"backfill({table!r}) runs only under migrator (it needs migrator's progress "
            "records); apply this revision with: migrator upgrade")
    _refuse_after_schema_changes(context, spec, environment)
    with context.autocommit_block():
        return _Walk(spec, environment).run()


def _validate(table: str, set_: str | None, transform: Any, columns: Sequence[str],
              where: str | None, key: str | Sequence[str], params: Mapping[str, Any] | None,
              name: str | None, batch_size: int, pause: float | str,
              target_batch_time: float | str | None, statement_timeout: float | str,
              max_retries: int) -> _Spec:
    if (set_ is None) == (transform is None):
        raise BackfillError(f"backfill({table!r}): give exactly one of set= (SQL assignments) "
                            "or transform= (a Python callable)")
    if transform is not None and not callable(transform):
        raise BackfillError(f"backfill({table!r}): transform must be callable")
    keys = (key,) if isinstance(key, str) else tuple(key)
    parts = tuple(table.split("."))
    for identifier in (*parts, *keys, *columns):
        if not identifier or not isinstance(identifier, str):
            raise BackfillError(f"backfill({table!r}): empty table, key or column name")
    if len(parts) > 2 or not keys:
        raise BackfillError(f"backfill({table!r}): table must be 'table' or 'schema.table' and "
                            "key at least one column")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise BackfillError(f"backfill({table!r}): batch_size must be a positive integer")
    if max_retries < 0:
        raise BackfillError(f"backfill({table!r}): max_retries must not be negative")
    what = f"backfill({table!r})"
    return _Spec(
        table=parts, key=keys, set=set_, transform=transform, columns=tuple(columns),
        where=where, params=dict(params or {}), name=name or parts[-1], batch_size=batch_size,
        pause=parse_duration(pause, what=f"{what} pause"),
        target_batch_time=None if target_batch_time is None else parse_duration(
            target_batch_time, what=f"{what} target_batch_time"),
        statement_timeout=parse_duration(statement_timeout, what=f"{what} statement_timeout"),
        max_retries=max_retries)


def _refuse_after_schema_changes(context: Any, spec: _Spec,
                                 environment: RevisionEnvironment) -> None:
    """A backfill must not share a revision with DDL: the DDL's locks would be held for the
    whole walk. The revision's transaction has an xid exactly when it has written something."""
    from sqlalchemy import text

    wrote = context.connection.execute(
        text("SELECT pg_current_xact_id_if_assigned() IS NOT NULL")).scalar()
    if wrote:
        raise BackfillError(
            f"plugin {environment.plugin!r} revision {environment.current_revision()}: "
            f"backfill({'.'.join(spec.table)!r}) follows schema changes in the same revision; "
            "move the schema change into a revision of its own before this one")


def render_sql(spec: _Spec) -> str:
    """The backfill as `--sql` shows it: commented, and runnable as one batch at a time."""
    table = ".".join(_quote(p) for p in spec.table)
    keys = ", ".join(_quote(k) for k in spec.key)
    where = f" AND ({spec.where})" if spec.where else ""
    lines = [
        f"-- migrator backfill {spec.name!r} on {table}: migrator runs this in batches of "
        f"{spec.batch_size} rows in key order, with checkpoints in migrator.backfill_progress.",
        "-- By hand: run the statement below until it updates 0 rows"
        + (" (its WHERE must exclude rows already done)." if spec.where else "."),
    ]
    if spec.set is None:
        lines.append(f"-- transform: a Python function over columns {list(spec.columns)}; "
                     "it has no SQL form.")
        return "\n".join(lines) + "\n"
    parameters = f" -- parameters: {json.dumps(dict(spec.params), default=str)}" \
        if spec.params else ""
    lines.append(
        f"UPDATE {table} SET {spec.set} WHERE ({keys}) IN (SELECT {keys} FROM {table} "
        f"WHERE TRUE{where} ORDER BY {keys} LIMIT {spec.batch_size});{parameters}")
    return "\n".join(lines) + "\n"


def _quote(identifier: str) -> str:
    """Quote an identifier for the offline rendering, the way PostgreSQL's quote_ident does."""
    from sqlalchemy.dialects.postgresql.base import PGDialect

    dialect = PGDialect()  # type: ignore[no-untyped-call]  # SQLAlchemy leaves it unannotated
    return str(dialect.identifier_preparer.quote(identifier))


class _Walk:
    """One backfill run: resume from the checkpoint, then batch until done."""

    def __init__(self, spec: _Spec, environment: RevisionEnvironment,
                 *, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.spec, self.env, self.sleep, self.clock = spec, environment, sleep, clock
        self.revision = environment.current_revision() or "?"
        self.log = environment.log
        self.conn: Any = None
        self.size = spec.batch_size
        self.seconds_per_row: float | None = None

    def run(self) -> BackfillResult:
        from migrator import backfill_sql

        started = self.clock()
        self._connect()
        self.statements = backfill_sql.Statements(self.spec, self.conn)
        state = self._start()
        while state.status != "done":
            if self.env.should_stop():
                raise Interrupted(
                    f"plugin {self.env.plugin!r} revision {self.revision}: backfill "
                    f"{self.spec.name!r} stopped after {state.rows_done} rows; progress is "
                    "saved, rerun to resume")
            state = self._batch_with_retries(state)
            if self.spec.pause and state.status != "done":
                self.sleep(self.spec.pause)
        seconds = self.clock() - started
        self.log.info("backfill.done", plugin=self.env.plugin, revision=self.revision,
                      backfill=self.spec.name, rows=state.rows_done, batches=state.batches_done,
                      seconds=round(seconds, 3))
        self._close()
        return BackfillResult(self.spec.name, state.rows_done, state.batches_done, seconds)

    # -- state ------------------------------------------------------------------------------

    def _start(self) -> Any:
        from migrator import backfill_sql

        state = backfill_sql.start(self.conn, self.env.plugin, self.revision, self.spec)
        if state.status == "done":
            self.log.info("backfill.already_done", plugin=self.env.plugin,
                          revision=self.revision, backfill=self.spec.name)
        elif state.batches_done:
            self.log.info("backfill.resuming", plugin=self.env.plugin, revision=self.revision,
                          backfill=self.spec.name, rows_done=state.rows_done,
                          last_key=state.last_key)
        return state

    def _batch_with_retries(self, state: Any) -> Any:
        import psycopg

        from migrator import retries

        retrying = retries.batch_retrying(max_retries=self.spec.max_retries,
                                          before_retry=self._before_retry, sleep=self.sleep)
        try:
            for attempt in retrying:
                with attempt:
                    return self._batch(state)
        except psycopg.Error as exc:
            raise BackfillError(
                f"plugin {self.env.plugin!r} revision {self.revision}: backfill "
                f"{self.spec.name!r} failed on the batch after key {state.last_key} "
                f"(up to {state.upper_key}, {self.size} rows): {_message(exc)}; progress is "
                "saved, fix the cause and rerun to resume") from None
        raise AssertionError("unreachable: tenacity either returns or re-raises")

    def _batch(self, state: Any) -> Any:
        began = self.clock()
        new_state = self.statements.run_batch(state, self.size)
        elapsed = self.clock() - began
        done_now = new_state.rows_done - state.rows_done
        keys_now = new_state.keys_seen
        rate = done_now / elapsed if elapsed > 0 else 0.0
        self.log.info(
            "backfill.batch", plugin=self.env.plugin, revision=self.revision,
            backfill=self.spec.name, batch=new_state.batches_done, rows=done_now,
            keys=keys_now, batch_size=self.size, rows_done=new_state.rows_done,
            last_key=new_state.last_key, ms=int(elapsed * 1000), rows_per_s=int(rate),
            estimated_total=new_state.estimated_total,
            eta_s=_eta(new_state.rows_done, new_state.estimated_total, rate))
        self._adapt(keys_now, elapsed)
        return new_state

    def _adapt(self, keys: int, elapsed: float) -> None:
        target = self.spec.target_batch_time
        if target is None or keys <= 0 or elapsed <= 0:
            return
        per_row = elapsed / keys
        # Smooth the per-row cost so one slow batch does not swing the size.
        self.seconds_per_row = per_row if self.seconds_per_row is None else (
            0.7 * self.seconds_per_row + 0.3 * per_row)
        wanted = target / self.seconds_per_row
        bounded = min(max(wanted, self.size * MAX_SHRINK), self.size * MAX_GROWTH)
        self.size = int(min(max(bounded, MIN_BATCH), MAX_BATCH))

    def _before_retry(self, attempt: int, exc: BaseException, delay: float) -> None:
        from migrator import retries

        code = retries.sqlstate(exc)
        action = "retry"
        if code == retries.QUERY_CANCELED:
            self.size = max(1, self.size // 2)
            action = "split"
        if retries.connection_lost(exc) or self.conn is None or self.conn.closed:
            action = "reconnect"
            self._close()
            self._connect()
            self.statements.conn = self.conn
        self.log.warning("backfill.retry", plugin=self.env.plugin, revision=self.revision,
                         backfill=self.spec.name, attempt=attempt, of=self.spec.max_retries,
                         action=action, batch_size=self.size, retry_in_s=round(delay, 2),
                         error=_message(exc))

    # -- connection -------------------------------------------------------------------------

    def _connect(self) -> None:
        self.conn = self.env.connect()
        self.conn.execute("SELECT set_config('statement_timeout', %s, false)",
                          (f"{int(self.spec.statement_timeout * 1000)}ms",))

    def _close(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            finally:
                self.conn = None


def _eta(done: int, total: int | None, rate: float) -> float | None:
    if total is None or rate <= 0 or total <= done:
        return None
    return round((total - done) / rate, 1)


def _message(exc: BaseException) -> str:
    from migrator.logs import redact

    text = str(exc).strip().splitlines()
    return redact(text[0] if text else type(exc).__name__)
