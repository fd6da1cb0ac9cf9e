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

if TYPE_CHECKING:
    from migrator.backfill import _Spec

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
    keys_seen: int = 0
    estimated_total: int | None = None


def _key_array(columns: list[sql.Composable]) -> sql.Composed:
    return sql.SQL("ARRAY[{}]").format(sql.SQL(", ").join(
        sql.SQL("{}::text").format(c) for c in columns))


def start(conn: psycopg.Connection[Any], plugin: str, revision: str, spec: _Spec) -> State:
    """Read the checkpoint, creating it (with the walk's upper bound) on the first start."""
    table = sql.Identifier(*spec.table)
    keys = [sql.Identifier(k) for k in spec.key]
    with conn.transaction():
        conn.execute(sql.SQL(
            "INSERT INTO {} (plugin, revision, name, status) VALUES (%s, %s, %s, 'running') "
            "ON CONFLICT (plugin, revision, name) DO NOTHING").format(_PROGRESS),
            (plugin, revision, spec.name))
        row = conn.execute(sql.SQL(
            "SELECT status, last_key, upper_key, rows_done, batches_done FROM {} "
            "WHERE plugin = %s AND revision = %s AND name = %s FOR UPDATE").format(_PROGRESS),
            (plugin, revision, spec.name)).fetchone()
        assert row is not None
        status, last_key, upper_key, rows_done, batches_done = row
        if status == "failed":
            status = "running"
        if status != "done" and upper_key is None:
            # The walk is bounded by the largest key present when it first starts: rows
            # inserted later are the application's, written with the new code.
            found = conn.execute(sql.SQL("SELECT {} FROM {} ORDER BY {} LIMIT 1").format(
                _key_array(list(keys)), table,
                sql.SQL(", ").join(sql.SQL("{} DESC").format(k) for k in keys))).fetchone()
            upper_key = found[0] if found else None
            status = "running" if upper_key is not None else "done"
        conn.execute(sql.SQL(
            "UPDATE {} SET upper_key = %s, status = %s, updated_at = now() "
            "WHERE plugin = %s AND revision = %s AND name = %s").format(_PROGRESS),
            (Jsonb(upper_key) if upper_key is not None else None, status, plugin, revision,
             spec.name))
    total = conn.execute(
        "SELECT reltuples::bigint FROM pg_catalog.pg_class WHERE oid = to_regclass(%s)",
        (".".join(spec.table),)).fetchone()
    estimated = int(total[0]) if total and total[0] is not None and total[0] >= 0 else None
    return State(plugin=plugin, revision=revision, name=spec.name, status=status,
                 last_key=last_key, upper_key=upper_key, rows_done=rows_done,
                 batches_done=batches_done,
                 estimated_total=estimated if spec.where is None else None)


class Statements:
    """The batch statement for one backfill, built once and run per batch."""

    def __init__(self, spec: _Spec, conn: psycopg.Connection[Any]) -> None:
        self.spec, self.conn = spec, conn
        self.table = sql.Identifier(*spec.table)
        self.keys = [sql.Identifier(k) for k in spec.key]
        self.aliases = [sql.Identifier(f"__migrator_k{i}") for i in range(len(spec.key))]
        self.set_sql = _author_sql(spec.set) if spec.set else None
        self.where_sql = _author_sql(spec.where) if spec.where else None

    def run_batch(self, state: State, size: int) -> State:
        if self.spec.transform is not None:
            return self._transform_batch(state, size)
        return self._sql_batch(state, size)

    # -- pieces ---------------------------------------------------------------------------

    def _params(self, state: State, size: int) -> dict[str, Any]:
        params: dict[str, Any] = dict(self.spec.params)
        for i, value in enumerate(state.upper_key or []):
            params[f"__migrator_upper{i}"] = value
        for i, value in enumerate(state.last_key or []):
            params[f"__migrator_last{i}"] = value
        params.update(__migrator_size=size, __migrator_plugin=state.plugin,
                      __migrator_revision=state.revision, __migrator_name=state.name)
        return params

    def _row(self, prefix: str) -> sql.Composed:
        return sql.SQL("({})").format(sql.SQL(", ").join(
            sql.Placeholder(f"__migrator_{prefix}{i}") for i in range(len(self.keys))))

    def _selection(self, state: State, extra_columns: list[sql.Composable]) -> sql.Composed:
        """The next batch's keys (aliased, so `set` cannot confuse them with the table's)."""
        key_row = sql.SQL("({})").format(sql.SQL(", ").join(self.keys))
        conditions = [sql.SQL("{} <= {}").format(key_row, self._row("upper"))]
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

    def _match(self, alias: sql.Composable) -> sql.Composed:
        return sql.SQL("({}) = ({})").format(
            sql.SQL(", ").join(sql.SQL("{}.{}").format(self.table, k) for k in self.keys),
            sql.SQL(", ").join(sql.SQL("{}.{}").format(alias, a) for a in self.aliases))

    def _last_of(self, source: sql.Composable) -> sql.Composed:
        return sql.SQL("(SELECT {} FROM {} ORDER BY {} LIMIT 1)").format(
            _key_array(list(self.aliases)), source,
            sql.SQL(", ").join(sql.SQL("{} DESC").format(a) for a in self.aliases))

    def _progress_update(self, counts: sql.Composable) -> sql.Composed:
        """Checkpoint from a row source with columns rows, keys, last."""
        return sql.SQL(
            "UPDATE {progress} AS p SET rows_done = p.rows_done + s.rows, "
            "batches_done = p.batches_done + 1, "
            "last_key = coalesce(to_jsonb(s.last), p.last_key), "
            "status = CASE WHEN s.keys < {size} THEN 'done' ELSE 'running' END, "
            "updated_at = now() FROM {counts} AS s "
            "WHERE p.plugin = {plugin} AND p.revision = {revision} AND p.name = {name} "
            "RETURNING p.status, p.last_key, p.rows_done, p.batches_done, s.keys").format(
                progress=_PROGRESS, size=sql.Placeholder("__migrator_size"), counts=counts,
                plugin=sql.Placeholder("__migrator_plugin"),
                revision=sql.Placeholder("__migrator_revision"),
                name=sql.Placeholder("__migrator_name"))

    def _apply_result(self, state: State, row: Any) -> State:
        status, last_key, rows_done, batches_done, keys = row
        return replace(state, status=status, last_key=last_key, rows_done=rows_done,
                       batches_done=batches_done, keys_seen=keys)

    def _sql_batch(self, state: State, size: int) -> State:
        """One statement: select keys, update them, checkpoint — atomic in autocommit."""
        assert self.set_sql is not None
        batch = sql.Identifier("__migrator_batch")
        update_where = [self._match(batch)]
        if self.where_sql is not None:
            update_where.append(sql.SQL("({})").format(self.where_sql))
        statement = sql.SQL(
            "WITH {batch} AS ({selection}), "
            "updated AS (UPDATE {table} SET {assignments} FROM {batch} WHERE {match} "
            "RETURNING 1), "
            "counts AS (SELECT (SELECT count(*) FROM updated) AS rows, "
            "(SELECT count(*) FROM {batch}) AS keys, {last} AS last) "
            "{progress}").format(
                batch=batch, selection=self._selection(state, []), table=self.table,
                assignments=self.set_sql, match=sql.SQL(" AND ").join(update_where),
                last=self._last_of(batch), progress=self._progress_update(sql.SQL("counts")))
        row = self.conn.execute(statement, self._params(state, size)).fetchone()
        return self._apply_result(state, row)

    def _transform_batch(self, state: State, size: int) -> State:
        """Rows to Python and back, with the checkpoint, in one short transaction."""
        transform = self.spec.transform
        assert transform is not None
        columns = [sql.Identifier(c) for c in self.spec.columns]
        params = self._params(state, size)
        with self.conn.transaction():
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
                from migrator.backfill import BackfillError

                raise BackfillError(
                    f"backfill {self.spec.name!r}: transform returned {len(changes)} results "
                    f"for {len(records)} rows; return one dict (or None) per row, in order")
            updated = self._write_changes(key_values, changes)
            last = [str(v) for v in key_values[-1]] if key_values else None
            row = self.conn.execute(self._progress_update(sql.SQL(
                "(SELECT %(__migrator_rows)s::bigint AS rows, %(__migrator_keys)s::bigint AS keys, "
                "%(__migrator_lastkey)s::text[] AS last)")),
                {**params, "__migrator_rows": updated, "__migrator_keys": len(records),
                 "__migrator_lastkey": last}).fetchone()
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
