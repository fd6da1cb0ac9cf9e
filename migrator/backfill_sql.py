"""The statements behind `migrator.backfill`: checkpoint row, upper bound, one batch.

Identifiers are composed with `psycopg.sql.Identifier`; the author's `set` and `where`
fragments are SQL written in the revision (like `op.execute`), their `:name` parameters turned
into psycopg's by SQLAlchemy's compiler and bound, never formatted in.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from migrator import backfill_ranges
from migrator.records import BackfillStatus

if TYPE_CHECKING:
    from migrator.backfill_spec import BackfillSpec

_PROGRESS = sql.Identifier("migrator", "backfill_progress")


@dataclass(frozen=True, slots=True)
class State:
    """A backfill's checkpoint: keys as text (cast back by PostgreSQL when bound)."""

    plugin: str
    revision: str
    name: str
    status: str
    last_key: list[str] | None
    upper_key: list[str] | None
    rows_done: int
    batches_done: int
    batch_keys: int = 0  # keys the last batch walked over
    batch_rows: int = 0  # rows the last batch updated
    estimated_total: int | None = None  # the true total when known, else the planner's guess
    total_rows: int | None = None  # counted when the walk started
    moved: bool = False  # the checkpoint was ahead of what this run last saw
    key_range: bool = False  # batches are key ranges (a dense integer key), not keyset


def _key_array(columns: list[sql.Composable]) -> sql.Composed:
    return sql.SQL("ARRAY[{}]").format(sql.SQL(", ").join(
        sql.SQL("{}::text").format(c) for c in columns))


def start(conn: psycopg.Connection[Any], plugin: str, revision: str, spec: BackfillSpec) -> State:
    """Read the checkpoint, creating it (with the walk's upper bound) on the first start."""
    table = sql.Identifier(*spec.table)
    keys = [sql.Identifier(k) for k in spec.key]
    with conn.transaction():
        conn.execute(sql.SQL(
            "INSERT INTO {} (plugin, revision, name, status) VALUES (%s, %s, %s, 'running') "
            "ON CONFLICT (plugin, revision, name) DO NOTHING").format(_PROGRESS),
            (plugin, revision, spec.name))
        row = conn.execute(sql.SQL(
            "SELECT status, last_key, upper_key, rows_done, batches_done, total_rows FROM {} "
            "WHERE plugin = %s AND revision = %s AND name = %s FOR UPDATE").format(_PROGRESS),
            (plugin, revision, spec.name)).fetchone()
        assert row is not None
        status, last_key, upper_key, rows_done, batches_done, total_rows = row
        if status in (BackfillStatus.FAILED, BackfillStatus.PAUSED):
            status = BackfillStatus.RUNNING
        # The table's rows, for the walk's density: counted when that is the total (no
        # `where`); otherwise (and on a resume) the planner's estimate.
        table_rows: int | None = None
        if status != BackfillStatus.DONE and upper_key is None:
            # The walk is bounded by the largest key present when it first starts: rows
            # inserted later are the application's, written with the new code.
            found = conn.execute(sql.SQL("SELECT {} FROM {} ORDER BY {} LIMIT 1").format(
                _key_array(list(keys)), table,
                sql.SQL(", ").join(sql.SQL("{} DESC").format(k) for k in keys))).fetchone()
            upper_key = found[0] if found else None
            status = BackfillStatus.RUNNING if upper_key is not None else BackfillStatus.DONE
            # The true total, counted once in the transaction that fixes the walk's bound
            # (the planner's estimate can be far off after deletes): the progress bar and
            # `status` show rows done out of it.
            total_rows = _count(conn, spec) if upper_key is not None else 0
            table_rows = None if spec.where else total_rows
        conn.execute(sql.SQL(
            "UPDATE {} SET upper_key = %s, status = %s, total_rows = %s, updated_at = now() "
            "WHERE plugin = %s AND revision = %s AND name = %s").format(_PROGRESS),
            (Jsonb(upper_key) if upper_key is not None else None, str(status), total_rows, plugin,
             revision, spec.name))
    total = total_rows if total_rows is not None else _estimate(conn, spec, rows_done)
    key_range = status != BackfillStatus.DONE and backfill_ranges.dense_integer_key(
        conn, spec, table_rows)
    return State(plugin=plugin, revision=revision, name=spec.name, status=status,
                 last_key=last_key, upper_key=upper_key, rows_done=rows_done,
                 batches_done=batches_done, estimated_total=total,
                 total_rows=total_rows, key_range=key_range)


def _count(conn: psycopg.Connection[Any], spec: BackfillSpec) -> int:
    """The rows the walk will update: those matching `where` (all of them without it)."""
    statement = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(*spec.table))
    if spec.where:
        statement = sql.SQL("{} WHERE {}").format(statement, _author_sql(spec.where))
    row = conn.execute(statement, dict(spec.params)).fetchone()
    return int(row[0]) if row else 0


def _estimate(conn: psycopg.Connection[Any], spec: BackfillSpec, rows_done: int) -> int | None:
    """The planner's estimate of the rows to update, for the ETA: the rows matching `where`
    (after a resume those are what is left, when the update makes rows stop matching it), or
    the whole table. Works before the table was ever analyzed, unlike `reltuples`."""
    statement = sql.SQL("EXPLAIN (FORMAT JSON) SELECT 1 FROM {}").format(
        sql.Identifier(*spec.table))
    if spec.where:
        statement = sql.SQL("{} WHERE {}").format(statement, _author_sql(spec.where))
    try:
        with conn.transaction():
            row = conn.execute(statement, dict(spec.params)).fetchone()
    except psycopg.Error:
        return None  # only the ETA is lost; the batch itself will report the real error
    if row is None:
        return None
    plan = row[0][0]["Plan"] if isinstance(row[0], list) else None
    rows = int(plan["Plan Rows"]) if plan else None
    if rows is None:
        return None
    return rows + rows_done if spec.where else rows


class Statements:
    """The batch statement for one backfill, built once and run per batch."""

    def __init__(self, spec: BackfillSpec, conn: psycopg.Connection[Any]) -> None:
        self.spec, self.conn = spec, conn
        self.table = sql.Identifier(*spec.table)
        self.keys = [sql.Identifier(k) for k in spec.key]
        self.aliases = [sql.Identifier(f"__migrator_k{i}") for i in range(len(spec.key))]
        self.set_sql = _author_sql(spec.set) if spec.set else None
        self.where_sql = _author_sql(spec.where) if spec.where else None
        # By (is this the first batch, is it a key range).
        self._sql_statements: dict[tuple[bool, bool], sql.Composed] = {}

    def run_batch(self, state: State, size: int) -> State:
        """One batch in one short transaction that first locks the checkpoint row, updates up
        to `size` rows after it and moves it. The batch starts from what is committed, not
        from what this process last saw: a batch of a killed run still running in its
        orphaned backend, or one whose commit reply was lost with the connection, is never
        applied twice. A returned state with `moved` and no `batch_keys` ran nothing: the
        checkpoint had moved; it holds the checkpoint as it is now."""
        if self.spec.transform is None:
            return self._sql_batch(state, size)
        with self.conn.transaction():
            current = self._lock_checkpoint(state)
            if current.status == BackfillStatus.DONE:
                return current
            return self._transform_batch(current, size)

    def mark(self, state: State, status: str) -> None:
        """Best effort: `failed` (a batch failed past its retries) or `paused` (stopped; the
        next run resumes), as `status` shows it."""
        self.conn.execute(sql.SQL(
            "UPDATE {} SET status = %s, updated_at = now() WHERE plugin = %s "
            "AND revision = %s AND name = %s AND status = 'running'").format(_PROGRESS),
            (status, state.plugin, state.revision, state.name))

    def _lock_checkpoint(self, state: State, *, lock: bool = True) -> State:
        row = self.conn.execute(sql.SQL(
            "SELECT status, last_key, rows_done, batches_done FROM {} "
            "WHERE plugin = %s AND revision = %s AND name = %s{}").format(
                _PROGRESS, sql.SQL(" FOR UPDATE" if lock else "")),
            (state.plugin, state.revision, state.name)).fetchone()
        if row is None:
            raise psycopg.errors.NoDataFound(
                f"the checkpoint row of backfill {state.name!r} disappeared")
        status, last_key, rows_done, batches_done = row
        moved = (last_key, batches_done) != (state.last_key, state.batches_done)
        return replace(state, status=BackfillStatus.RUNNING if status in (BackfillStatus.FAILED,
                                                         BackfillStatus.PAUSED) else status,
                       last_key=last_key, rows_done=rows_done, batches_done=batches_done,
                       batch_keys=0, batch_rows=0, moved=moved)

    # -- pieces ---------------------------------------------------------------------------

    def _params(self, state: State, size: int) -> dict[str, Any]:
        params: dict[str, Any] = dict(self.spec.params)
        for i, value in enumerate(state.upper_key or []):
            params[f"__migrator_upper{i}"] = value
        for i, value in enumerate(state.last_key or []):
            params[f"__migrator_last{i}"] = value
        params.update(__migrator_size=size, __migrator_plugin=state.plugin,
                      __migrator_revision=state.revision, __migrator_name=state.name,
                      __migrator_batches=state.batches_done)
        return params

    def _row(self, prefix: str) -> sql.Composed:
        return sql.SQL("({})").format(sql.SQL(", ").join(
            sql.Placeholder(f"__migrator_{prefix}{i}") for i in range(len(self.keys))))

    def _selection(self, state: State, extra_columns: list[sql.Composable], *,
                   guard: sql.Composable | None = None) -> sql.Composed:
        """The next batch's keys (aliased, so `set` cannot confuse them with the table's)."""
        key_row = sql.SQL("({})").format(sql.SQL(", ").join(self.keys))
        conditions = [sql.SQL("{} <= {}").format(key_row, self._row("upper"))]
        if guard is not None:
            conditions.insert(0, sql.SQL("EXISTS (SELECT FROM {})").format(guard))
        if state.last_key is not None:
            conditions.insert(0, sql.SQL("{} > {}").format(key_row, self._row("last")))
        if self.where_sql is not None:
            conditions.append(sql.SQL("({})").format(self.where_sql))
        selected = [sql.SQL("{} AS {}").format(k, a) for k, a in zip(self.keys, self.aliases,
                                                                          strict=True)]
        return sql.SQL("SELECT {} FROM {} WHERE {} ORDER BY {} LIMIT {}").format(
            sql.SQL(", ").join([*selected, *extra_columns]), self.table,
            sql.SQL(" AND ").join(conditions), sql.SQL(", ").join(self.keys),
            sql.Placeholder("__migrator_size"))

    def _progress_update(self, counts: sql.Composable) -> sql.Composed:
        """Checkpoint from a row source with columns rows, keys, last."""
        return sql.SQL(
            "UPDATE {progress} AS p SET rows_done = p.rows_done + s.rows, "
            "batches_done = p.batches_done + 1, "
            "last_key = coalesce(to_jsonb(s.last), p.last_key), "
            # Done: a short batch, or one that ended exactly at the walk's bound.
            "status = CASE WHEN s.keys < {size} OR to_jsonb(s.last) = p.upper_key "
            "THEN 'done' ELSE 'running' END, "
            "updated_at = now() FROM {counts} AS s "
            "WHERE p.plugin = {plugin} AND p.revision = {revision} AND p.name = {name} "
            # Only from the checkpoint this batch started at (see _sql_statement).
            "AND p.batches_done = {batches} "
            "RETURNING p.status, p.last_key, p.rows_done, p.batches_done, s.keys, s.rows").format(
                progress=_PROGRESS, size=sql.Placeholder("__migrator_size"), counts=counts,
                plugin=sql.Placeholder("__migrator_plugin"),
                revision=sql.Placeholder("__migrator_revision"),
                name=sql.Placeholder("__migrator_name"),
                batches=sql.Placeholder("__migrator_batches"))

    def _apply_result(self, state: State, row: Any) -> State:
        status, last_key, rows_done, batches_done, keys, rows = row
        return replace(state, status=status, last_key=last_key, rows_done=rows_done,
                       batches_done=batches_done, batch_keys=keys, batch_rows=rows)

    def _sql_batch(self, state: State, size: int) -> State:
        shape = (state.last_key is None, state.key_range)
        if shape not in self._sql_statements:
            self._sql_statements[shape] = (self._range_statement(state) if state.key_range
                                           else self._sql_statement(state))
        row = self.conn.execute(self._sql_statements[shape], self._params(state, size)).fetchone()
        if row is None:  # the checkpoint had moved: nothing ran; where is it now?
            return replace(self._lock_checkpoint(state, lock=False), moved=True)
        return self._apply_result(state, row)

    def _checkpoint_row(self) -> sql.Composed:
        """The checkpoint row, if it is still where this batch starts."""
        return sql.SQL(
            "{} WHERE plugin = {} AND revision = {} AND name = {} AND batches_done = {}").format(
                _PROGRESS, sql.Placeholder("__migrator_plugin"),
                sql.Placeholder("__migrator_revision"), sql.Placeholder("__migrator_name"),
                sql.Placeholder("__migrator_batches"))

    def _range_statement(self, state: State) -> sql.Composed:
        assert self.set_sql is not None
        return backfill_ranges.range_statement(
            self.table, self.keys[0], self.set_sql, self.where_sql,
            first=state.last_key is None, checkpoint_row=self._checkpoint_row(),
            progress=self._progress_update(sql.SQL("counts")))

    def _sql_statement(self, state: State) -> sql.Composed:
        """One autocommit statement, one round trip: lock the checkpoint row if it is still
        where this batch starts (`guard`), find the batch's last key, update the key range up
        to it, move the checkpoint. Nothing touches a row of the table before `guard` holds
        the checkpoint's lock (the batch's keys need its answer first); when a concurrent
        batch moved the checkpoint meanwhile, `guard` re-reads it after that batch's commit,
        finds it moved and yields nothing, so this statement updates nothing and returns no
        row. The UPDATE is a plain index range scan (no join back to the batch's keys), the
        fastest way PostgreSQL updates a slice of a table."""
        assert self.set_sql is not None
        batch, last = sql.Identifier("__migrator_batch"), sql.Identifier("__migrator_last")
        guard = sql.Identifier("__migrator_guard")
        key_row = sql.SQL("({})").format(sql.SQL(", ").join(self.keys))
        update_where = [sql.SQL("{} <= (SELECT {} FROM {})").format(
            key_row, sql.SQL(", ").join(self.aliases), last)]
        if state.last_key is not None:
            update_where.insert(0, sql.SQL("{} > {}").format(key_row, self._row("last")))
        if self.where_sql is not None:
            update_where.append(sql.SQL("({})").format(self.where_sql))
        statement = sql.SQL(
            "WITH {guard} AS (SELECT 1 FROM {checkpoint_row} FOR UPDATE), "
            "{batch} AS ({selection}), "
            "{last} AS (SELECT {aliases} FROM {batch} ORDER BY {descending} LIMIT 1), "
            "updated AS (UPDATE {table} SET {assignments} WHERE {update_where} RETURNING 1), "
            "counts AS (SELECT (SELECT count(*) FROM updated) AS rows, "
            "(SELECT count(*) FROM {batch}) AS keys, (SELECT {last_text} FROM {last}) AS last) "
            "{progress}").format(
                guard=guard, checkpoint_row=self._checkpoint_row(), batch=batch,
                selection=self._selection(state, [], guard=guard), last=last,
                aliases=sql.SQL(", ").join(self.aliases),
                descending=sql.SQL(", ").join(sql.SQL("{} DESC").format(a) for a in self.aliases),
                table=self.table, assignments=self.set_sql,
                update_where=sql.SQL(" AND ").join(update_where),
                last_text=_key_array(list(self.aliases)),
                progress=self._progress_update(sql.SQL("counts")))
        return statement

    def _transform_batch(self, state: State, size: int) -> State:
        """Rows to Python and back, with the checkpoint (in the caller's transaction)."""
        transform = self.spec.transform
        assert transform is not None
        columns = [sql.Identifier(c) for c in self.spec.columns]
        params = self._params(state, size)
        selection = sql.SQL("{} FOR UPDATE").format(
            self._selection(state, [*self.keys, *columns] if columns else list(self.keys)))
        cursor = self.conn.cursor()
        rows = cursor.execute(selection, params).fetchall()
        names = [d.name for d in cursor.description or []]
        records = [dict(zip(names, row, strict=True)) for row in rows]
        key_values = [[r[f"__migrator_k{i}"] for i in range(len(self.keys))] for r in records]
        visible = [{k: v for k, v in r.items() if not k.startswith("__migrator_")}
                   for r in records]
        changes = list(transform(visible))
        if len(changes) != len(records):
            from migrator.errors import BackfillError

            raise BackfillError(
                f"backfill {self.spec.name!r}: transform returned {len(changes)} results "
                f"for {len(records)} rows; return one dict (or None) per row, in order")
        updated = self._write_changes(key_values, changes)
        # The last key as PostgreSQL spells it (`key::text`, like the SQL form's checkpoint),
        # from the value bound with its own type: str() of a Python value may differ.
        last: sql.Composable = sql.SQL("NULL::text[]")
        if key_values:
            last = _key_array([sql.Placeholder(f"__migrator_lastkey{i}")
                               for i in range(len(self.keys))])
            params.update({f"__migrator_lastkey{i}": v for i, v in enumerate(key_values[-1])})
        row = self.conn.execute(self._progress_update(sql.SQL(
            "(SELECT %(__migrator_rows)s::bigint AS rows, %(__migrator_keys)s::bigint AS keys, "
            "{} AS last)").format(last)),
            {**params, "__migrator_rows": updated, "__migrator_keys": len(records)}).fetchone()
        return self._apply_result(state, row)

    def _write_changes(self, key_values: list[list[Any]], changes: list[Any]) -> int:
        groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for keys, change in zip(key_values, changes, strict=True):
            if not change:
                continue
            params = {f"__migrator_k{i}": value for i, value in enumerate(keys)}
            params.update({f"__migrator_set_{column}": value for column, value in change.items()})
            groups.setdefault(tuple(sorted(change)), []).append(params)
        for columns, rows in groups.items():
            statement = sql.SQL("UPDATE {} SET {} WHERE ({}) = ({})").format(
                self.table,
                sql.SQL(", ").join(sql.SQL("{} = {}").format(
                    sql.Identifier(c), sql.Placeholder(f"__migrator_set_{c}")) for c in columns),
                sql.SQL(", ").join(self.keys),
                sql.SQL(", ").join(sql.Placeholder(f"__migrator_k{i}")
                                   for i in range(len(self.keys))))
            with self.conn.cursor() as cursor:
                cursor.executemany(statement, rows)
        return sum(len(rows) for rows in groups.values())


def _author_sql(fragment: str) -> sql.Composable:
    """An author's SQL fragment with `:name` parameters in psycopg's `%(name)s` style."""
    from sqlalchemy import text
    from sqlalchemy.dialects.postgresql import psycopg as psycopg_dialect

    dialect = psycopg_dialect.dialect()  # type: ignore[no-untyped-call]  # unannotated upstream
    compiled = text(fragment).compile(dialect=dialect)
    return sql.SQL(compiled.string)
