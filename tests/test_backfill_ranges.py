"""Key-range batches (`WHERE id >= a AND id <= b`) on dense integer keys, the keyset fallback
otherwise, and exactly-once through both — gaps, concurrent inserts and deletes, a kill -9
mid-walk, a planner whose estimate is wrong — against real PostgreSQL.

Most tests drive the batch statements directly (`backfill_sql.start` / `run_batch`) on a
table whose `counter` column each batch's `SET` increments: a row updated twice shows 2.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from helpers import fetch, version_of, wait_until

from migrator import backfill_sql, records
from migrator.backfill_spec import validate

Logs = Callable[[str], list[dict[str, Any]]]
DEADLINE = 60.0


def spec_for(key: str | tuple[str, ...] = "id", *, where: str | None = None,
             transform: Any = None, size: int = 1000) -> Any:
    return validate("items", None if transform else "counter = counter + 1", transform,
                    ("counter",) if transform else (), where, key, None, None, size, 0, 0,
                    "30s", 10)


def walk(conn: psycopg.Connection[Any], spec: Any, size: int,
         between: Callable[[int], None] | None = None, *, limit: int | None = None
         ) -> tuple[Any, list[Any]]:
    """Run batches from the checkpoint until done (or `limit` batches); `between(n)` after
    the n-th. Returns the first state (its walk decided) and every batch's state."""
    first = state = backfill_sql.start(conn, "p", "r", spec)
    statements = backfill_sql.Statements(spec, conn)
    batches: list[Any] = []
    while state.status != "done" and (limit is None or len(batches) < limit):
        state = statements.run_batch(state, size)
        batches.append(state)
        if between is not None:
            between(len(batches))
    return first, batches


@pytest.fixture
def conn(database_url: str) -> Any:
    with psycopg.connect(database_url, autocommit=True) as connection:
        records.ensure_schema(connection)
        yield connection


def make_items(conn: psycopg.Connection[Any], ids: str, key_type: str = "bigint") -> None:
    """`items(id <key_type> PRIMARY KEY, counter)` with the ids of the SQL set `ids`."""
    conn.execute(f"CREATE TABLE items (id {key_type} PRIMARY KEY, "
                 "counter integer NOT NULL DEFAULT 0)")
    conn.execute(f"INSERT INTO items (id) SELECT g FROM ({ids}) AS s(g)")


def counters(conn: psycopg.Connection[Any], where: str = "true") -> dict[int, int]:
    return dict(conn.execute(
        f"SELECT counter, count(*) FROM items WHERE {where} GROUP BY 1").fetchall())


def test_a_dense_integer_key_is_walked_in_key_ranges_each_row_once(conn: Any) -> None:
    """1..10,000 (integer): the walk is by key ranges of exactly the batch size, ends at the
    largest key, and updates every row once."""
    make_items(conn, "SELECT generate_series(1, 10000)", "integer")
    first, batches = walk(conn, spec_for(), 1000)
    assert first.key_range and first.total_rows == 10_000
    assert [b.batch_rows for b in batches] == [1000] * 10
    assert [b.last_key for b in batches][:2] == [["1000"], ["2000"]]
    assert (batches[-1].status, batches[-1].last_key, batches[-1].rows_done) == (
        "done", ["10000"], 10_000)
    assert counters(conn) == {1: 10_000}


def test_with_where_only_matching_rows_in_each_range_are_updated_and_counted(conn: Any) -> None:
    """With `where`, the count is of matching rows (the true total) and the density comes from
    the planner's estimate of the table: ranges, each updating only its matching rows."""
    make_items(conn, "SELECT generate_series(1, 5000)")
    conn.execute("UPDATE items SET counter = 10 WHERE id % 4 = 0; ANALYZE items")
    first, batches = walk(conn, spec_for(where="counter < 10"), 1000)
    assert first.key_range and first.total_rows == 3750
    assert [b.batch_rows for b in batches] == [750] * 5
    assert batches[-1].rows_done == 3750 and counters(conn) == {1: 3750, 10: 1250}


def test_big_gaps_are_skipped_and_sparse_keys_fall_back_to_keyset(conn: Any) -> None:
    """A dense key with a 3,000-wide hole: the batch after the hole starts at the next key
    present (no empty batch). Keys missing everywhere (every third): ranges with fewer rows.
    Keys spread over a million integers: keyset. Every row once in each."""
    make_items(conn, "SELECT generate_series(1, 9000) UNION ALL "
               "SELECT generate_series(12001, 20000)")
    first, batches = walk(conn, spec_for(), 1000)
    assert first.key_range
    assert all(b.batch_rows == 1000 for b in batches) and len(batches) == 17
    assert ["13000"] in [b.last_key for b in batches]
    assert counters(conn) == {1: 17_000}

    conn.execute("DROP TABLE items; DELETE FROM migrator.backfill_progress")
    make_items(conn, "SELECT g FROM generate_series(1, 9000) g WHERE g % 3 <> 0")
    first, batches = walk(conn, spec_for(), 900)
    assert first.key_range
    assert len(batches) == 10 and {b.batch_rows for b in batches} == {600}
    assert counters(conn) == {1: 6000}

    conn.execute("DROP TABLE items; DELETE FROM migrator.backfill_progress")
    make_items(conn, "SELECT generate_series(1, 3000) UNION ALL "
               "SELECT generate_series(1000001, 1003000)")
    first, batches = walk(conn, spec_for(), 1000)
    assert not first.key_range
    assert [b.batch_rows for b in batches] == [1000] * 6
    assert counters(conn) == {1: 6000}


def test_rows_inserted_and_deleted_during_a_key_range_walk(conn: Any) -> None:
    """While the walk runs: rows deleted ahead of it are not missed nor counted, rows inserted
    ahead of it (within its bound) are updated once, rows inserted behind it or past its
    bound are the application's (left alone), and nothing is updated twice."""
    make_items(conn, "SELECT generate_series(1, 10000)")

    def meddle(batch: int) -> None:
        if batch == 3:  # the walk is at 3000
            conn.execute("DELETE FROM items WHERE id BETWEEN 5001 AND 7000 OR id = 2000")
            conn.execute("INSERT INTO items (id) VALUES (0), (2000), (6500), (10001)")
        if batch == 5:  # the walk is at 5000; the next batch starts at 6500
            conn.execute("INSERT INTO items (id) VALUES (6900), (10999)")

    first, batches = walk(conn, spec_for(), 1000, meddle)
    assert first.key_range and batches[-1].status == "done"
    assert counters(conn, "id BETWEEN 1 AND 10000 AND id NOT IN (2000, 6500, 6900)") == {
        1: 10_000 - 2000 - 1}
    assert counters(conn, "id IN (6500, 6900)") == {1: 2}  # inserted ahead: walked into
    assert counters(conn, "id IN (0, 2000, 10001, 10999)") == {0: 4}  # behind, or past the bound
    assert [b.last_key for b in batches][5] == ["7499"]  # from the next key present, 6500
    assert batches[-1].rows_done == 10_000 - 2000 + 2  # id 2000 was done before its delete


def test_composite_text_and_non_integer_keys_and_transforms_walk_by_keyset(conn: Any) -> None:
    """Ranges need one integer key: a text key, a numeric key, a composite key and the
    Python form all walk by keyset, every row once."""
    for key_type in ("text", "numeric"):
        make_items(conn, "SELECT generate_series(1, 2500)", key_type)
        first, batches = walk(conn, spec_for(), 1000)
        assert not first.key_range and len(batches) == 3
        assert counters(conn) == {1: 2500}
        conn.execute("DROP TABLE items; DELETE FROM migrator.backfill_progress")

    conn.execute("CREATE TABLE items (a integer, b integer, counter integer NOT NULL DEFAULT 0, "
                 "PRIMARY KEY (a, b))")
    conn.execute("INSERT INTO items (a, b) SELECT g / 10, g % 10 FROM generate_series(0, 2499) g")
    first, batches = walk(conn, spec_for(("a", "b")), 1000)
    assert not first.key_range and counters(conn) == {1: 2500}

    conn.execute("DROP TABLE items; DELETE FROM migrator.backfill_progress")
    make_items(conn, "SELECT generate_series(1, 2500)")

    def bump(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{"counter": row["counter"] + 1} for row in rows]

    first, batches = walk(conn, spec_for(transform=bump), 1000)
    assert not first.key_range and counters(conn) == {1: 2500}


def test_a_resume_trusts_no_estimate_for_correctness(conn: Any) -> None:
    """The first start counts (sparse: keyset); the resume has only the planner's estimate,
    stale after a mass delete (it says dense: ranges). The checkpoint means the same in both
    walks, so the resumed walk neither skips nor repeats a row."""
    make_items(conn, "SELECT generate_series(1, 20000)")
    # No autovacuum: it would correct the estimate this test needs stale.
    conn.execute("ALTER TABLE items SET (autovacuum_enabled = off); ANALYZE items")
    conn.execute("DELETE FROM items WHERE id BETWEEN 3001 AND 18000")  # 5,000 rows over 20,000
    first, batches = walk(conn, spec_for(), 1000, limit=2)
    assert not first.key_range and batches[-1].last_key == ["2000"]

    resumed, rest = walk(conn, spec_for(), 1000)
    assert resumed.key_range and resumed.last_key == ["2000"]
    assert rest[-1].status == "done" and rest[-1].rows_done == 5000
    assert counters(conn) == {1: 5000}


# -- the CLI: kill -9 mid key-range walk --------------------------------------------------


def rows_done(url: str) -> int:
    rows = fetch(url, "SELECT rows_done FROM migrator.backfill_progress WHERE plugin = 'bf'")
    return int(rows[0][0]) if rows else 0


def batch_in_flight(url: str) -> bool:
    return bool(fetch(url, "SELECT 1 FROM pg_stat_activity WHERE datname = current_database() "
                      "AND application_name LIKE 'migrator@%%' AND state = 'active' "
                      "AND query LIKE '%%pg_sleep%%'"))


@pytest.mark.parametrize("planner", ["right", "wrong"])
def test_kill_9_mid_key_range_walk_then_rerun_updates_every_row_once(
    planner: str, database_url: str, tree: Callable[[str], Path], run_cli: Any,
    start_cli: Any, cli_env: dict[str, str], json_logs: Logs,
) -> None:
    """SIGKILL with a key-range batch in flight; the rerun waits for the orphaned batch and
    resumes after whichever batch last committed: every row's counter is 1. With the
    planner's estimate made wrong before the rerun (100 rows for a 6,000-row table), the
    rerun walks by keyset from the same checkpoint, and still updates every row once."""
    env = {**cli_env, "MIGRATOR_DATABASE_URL": database_url,
           "MIGRATOR_MIGRATIONS_DIR": str(tree("bf_items")), "TEST_BF_BATCH": "1000",
           "TEST_BF_TARGET": "0", "TEST_BF_NAP": "0.5"}
    assert run_cli("upgrade", "--plugin", "bf", "--to", "bf_0001", env=env).returncode == 0
    fetch(database_url, "INSERT INTO bf.items (id, payload) SELECT g, "
          "jsonb_build_object('name', 'n' || g) FROM generate_series(1, 6000) g")
    process = start_cli("upgrade", env=env)
    wait_until(lambda: rows_done(database_url) >= 2000 and batch_in_flight(database_url),
               "a batch in flight after two", process)
    process.send_signal(signal.SIGKILL)
    _stdout, stderr = process.communicate(timeout=DEADLINE)
    assert {e["walk"] for e in json_logs(stderr) if e["event"] == "backfill.batch"} == {
        "key_range"}
    fetch(database_url, "ALTER TABLE bf.items SET (autovacuum_enabled = off)")
    fetch(database_url, "ANALYZE bf.items")
    if planner == "wrong":
        # What the planner scales from: 100 rows in as many pages as the table has now.
        fetch(database_url, "UPDATE pg_catalog.pg_class SET reltuples = 100, relpages = "
              "pg_catalog.pg_relation_size('bf.items') / 8192 WHERE oid = 'bf.items'::regclass")

    rerun = run_cli("upgrade", env={**env, "TEST_BF_NAP": "0.001"})
    assert rerun.returncode == 0, rerun.stderr
    events = json_logs(rerun.stderr)
    [resumed] = [e for e in events if e["event"] == "backfill.resuming"]
    batches = [e for e in events if e["event"] == "backfill.batch"]
    assert {e["walk"] for e in batches} == {"key_range" if planner == "right" else "keyset"}
    assert sum(e["rows"] for e in batches) == 6000 - resumed["rows_done"]
    assert dict(fetch(database_url, "SELECT counter, count(*) FROM bf.items GROUP BY 1")) == {
        1: 6000}
    assert version_of(database_url, "bf") == ["bf_0003"]
