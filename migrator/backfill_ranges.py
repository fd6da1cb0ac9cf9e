"""Key-range batches for a backfill over a dense integer key.

On a single integer key where most integers between the smallest and the largest key are
present, a batch updates `WHERE id >= a AND id <= b` — one index range scan — instead of first
finding its last key with `ORDER BY id LIMIT n` (keyset). The batch size is then the width of
the key range: a batch never holds more rows than its size, a range with few rows (a gap) just
advances faster, and each batch starts at the next key present, so a gap costs one probe.

Correctness never depends on the density decision: in both walks the checkpoint's `last_key`
means "every key up to here is done", so a run may walk by ranges and its resume by keyset (or
the other way round) when the count or the planner's estimate says otherwise.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql

if TYPE_CHECKING:
    from migrator.backfill_spec import BackfillSpec

INTEGER_TYPES = frozenset({"smallint", "integer", "bigint"})
# Present keys per integer of the key's span at or above which the walk uses ranges. Below it
# (ids from several sequences, big deleted stretches) ranges would mostly walk empty integers.
MIN_DENSITY = 0.5


def dense_integer_key(conn: psycopg.Connection[Any], spec: BackfillSpec,
                      rows: int | None) -> bool:
    """Whether the walk may use key ranges: the SQL form, one key column of an integer type,
    and `rows` (the table's rows, counted; None: the planner's estimate) covering at least
    MIN_DENSITY of the integers from the smallest key to the largest."""
    if spec.transform is not None or len(spec.key) != 1:
        return False
    key, table = sql.Identifier(spec.key[0]), sql.Identifier(*spec.table)
    # min() and max() of an indexed column are two index probes, not a scan.
    try:
        row = conn.execute(sql.SQL(
            "SELECT pg_catalog.format_type(pg_catalog.pg_typeof(min({k})), NULL), min({k}), "
            "max({k}) FROM {t}").format(k=key, t=table)).fetchone()
    except psycopg.Error:
        return False  # keyset, whose first batch reports the real error in context
    if row is None or row[0] not in INTEGER_TYPES or row[1] is None:
        return False
    span = int(row[2]) - int(row[1]) + 1
    if rows is None:
        rows = planner_rows(conn, table)
    return rows is not None and rows >= MIN_DENSITY * span


def planner_rows(conn: psycopg.Connection[Any], table: sql.Composable) -> int | None:
    """The planner's estimate of a table's rows (scaled to its current size, unlike
    `reltuples`); None when it cannot tell."""
    try:
        row = conn.execute(sql.SQL("EXPLAIN (FORMAT JSON) SELECT 1 FROM {}").format(
            table)).fetchone()
    except psycopg.Error:
        return None
    if row is None:
        return None
    plan = row[0] if isinstance(row[0], list) else json.loads(row[0])
    return int(plan[0]["Plan"]["Plan Rows"])


def range_statement(table: sql.Composable, key: sql.Composable, assignments: sql.Composable,
                    where: sql.Composable | None, *, first: bool,
                    progress: sql.Composable, checkpoint_row: sql.Composable) -> sql.Composed:
    """One autocommit statement, one round trip, like the keyset batch: lock the checkpoint row
    if it is still where this batch starts (`guard`: nothing is computed from the table, let
    alone updated, without it — a stale batch of a killed run finds the checkpoint moved and
    updates nothing), take the range from the next key present after the checkpoint to at
    most `size` integers on (never past the walk's bound), update it, move the checkpoint to
    the range's end. `progress` is the checkpoint update reading a row source with columns
    rows, keys, last (the keyset batch's own); `checkpoint_row` the guard's condition."""
    guard, bounds = sql.Identifier("__migrator_guard"), sql.Identifier("__migrator_range")
    upper = sql.SQL("{}::numeric").format(sql.Placeholder("__migrator_upper0"))
    after = sql.SQL("") if first else sql.SQL("WHERE {} > {} ").format(
        key, sql.Placeholder("__migrator_last0"))
    # `start` is the next key present (or the bound, when none is left), found in the index
    # (ordered by the key itself, not by the numeric it is cast to afterwards); numeric
    # arithmetic, so a range near the type's largest value cannot overflow.
    next_key = sql.SQL(
        "least(coalesce((SELECT {k} FROM {t} {after}ORDER BY {k} LIMIT 1)::numeric, {upper}), "
        "{upper})").format(k=key, t=table, after=after, upper=upper)
    update_where = [sql.SQL("{k} >= (SELECT start FROM {r}) AND {k} <= (SELECT hi FROM {r})")
                    .format(k=key, r=bounds)]
    if where is not None:
        update_where.append(sql.SQL("({})").format(where))
    return sql.SQL(
        "WITH {guard} AS (SELECT 1 FROM {checkpoint_row} FOR UPDATE), "
        "{start} AS MATERIALIZED (SELECT {next_key} AS start FROM {guard}), "
        "{bounds} AS (SELECT start::bigint AS start, "
        "least(start + {size} - 1, {upper})::bigint AS hi FROM {start}), "
        "updated AS (UPDATE {table} SET {assignments} WHERE {update_where} RETURNING 1), "
        "counts AS (SELECT (SELECT count(*) FROM updated) AS rows, r.hi - r.start + 1 AS keys, "
        "ARRAY[r.hi::text] AS last FROM {bounds} AS r) "
        "{progress}").format(
            guard=guard, checkpoint_row=checkpoint_row, bounds=bounds,
            start=sql.Identifier("__migrator_start"),
            size=sql.Placeholder("__migrator_size"), upper=upper, next_key=next_key,
            table=table, assignments=assignments,
            update_where=sql.SQL(" AND ").join(update_where), progress=progress)
