"""Backfills against real PostgreSQL: exactly once, resumable, retried, throttled, refused next
to DDL; SQL and Python forms, single and composite keys.

The `bf_items` tree's backfill counts the updates each row receives (`counter`); its batches
are tuned by `TEST_BF_*` variables, and sleep in the database (once per batch, or per row) when
a test must catch one in flight. Faults use real processes, signals and sessions.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from helpers import error_lines, fetch, settings_for, version_of, wait_until

from migrator import BackfillError, backfill, records, runs
from migrator.backfill_run import DEFAULT_TARGET_BATCH_TIME, MAX_BATCH, MIN_BATCH, BatchSizer
from migrator.backfill_spec import validate as _validate
from migrator.locking import plugin_key

Logs = Callable[[str], list[dict[str, Any]]]
Tree = Callable[[str], Path]
DEADLINE = 60.0  # seconds any awaited state may take on a loaded machine


# -- helpers ---------------------------------------------------------------------------------


def cli_env_for(cli_env: dict[str, str], url: str, tree: Path, **extra: str) -> dict[str, str]:
    return {**cli_env, "MIGRATOR_DATABASE_URL": url, "MIGRATOR_MIGRATIONS_DIR": str(tree),
            **extra}


def counters(url: str) -> dict[int, int]:
    """counter value -> how many rows of bf.items have it."""
    return dict(fetch(url, "SELECT counter, count(*) FROM bf.items GROUP BY counter"))


def progress(url: str, plugin: str = "bf") -> dict[str, Any]:
    [row] = fetch(url, "SELECT status, rows_done, batches_done, last_key, upper_key "
                  "FROM migrator.backfill_progress WHERE plugin = %s", (plugin,))
    return dict(zip(("status", "rows_done", "batches_done", "last_key", "upper_key"), row,
                    strict=True))


def rows_done(url: str) -> int:
    rows = fetch(url, "SELECT rows_done FROM migrator.backfill_progress WHERE plugin = 'bf'")
    return int(rows[0][0]) if rows else 0


def backfill_backend(url: str) -> list[int]:
    """Pids of migrator sessions running a batch of the bf backfill (it sleeps in pg_sleep)."""
    return [row[0] for row in fetch(
        url, "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
        "AND pid <> pg_backend_pid() AND application_name LIKE 'migrator@%%' "
        "AND state = 'active' AND query LIKE '%%pg_sleep%%'")]


@pytest.fixture
def items(database_url: str, tree: Tree, run_cli: Any, cli_env: dict[str, str]
          ) -> Callable[..., dict[str, str]]:
    """``items(n, **TEST_BF_vars)``: bf_items at bf_0001 with n rows; returns the CLI env."""

    def make(n: int, **knobs: str) -> dict[str, str]:
        env = cli_env_for(cli_env, database_url, tree("bf_items"), **knobs)
        first = run_cli("upgrade", "--plugin", "bf", "--to", "bf_0001", env=env)
        assert first.returncode == 0, first.stderr
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute("INSERT INTO bf.items (id, payload) SELECT g, "
                         "jsonb_build_object('name', 'n' || g) FROM generate_series(1, %s) g",
                         (n,))
        return env

    return make


# -- exactly once ----------------------------------------------------------------------------


def test_200k_rows_are_each_updated_exactly_once(
    database_url: str, items: Any, run_cli: Any, json_logs: Logs,
) -> None:
    """200,000 rows in 20,000-row batches: every row's counter is 1, the checkpoint is done,
    one backfill.batch event per batch, and the next revision runs after it."""
    env = items(200_000, TEST_BF_BATCH="20000", TEST_BF_TARGET="0")
    result = run_cli("upgrade", env=env)
    assert result.returncode == 0, result.stderr

    assert counters(database_url) == {1: 200_000}
    assert fetch(database_url, "SELECT count(*) FROM bf.items "
                 "WHERE filled IS DISTINCT FROM payload->>'name'") == [(0,)]
    assert progress(database_url) == {"status": "done", "rows_done": 200_000,
                                      "batches_done": 10, "last_key": ["200000"],
                                      "upper_key": ["200000"]}
    assert version_of(database_url, "bf") == ["bf_0003"]

    events = json_logs(result.stderr)
    batches = [e for e in events if e["event"] == "backfill.batch"]
    assert [e["batch"] for e in batches] == list(range(1, 11))
    assert {(e["rows"], e["keys"], e["batch_size"]) for e in batches} == {(20_000, 20_000, 20_000)}
    assert [e["rows_done"] for e in batches] == list(range(20_000, 200_001, 20_000))
    first, last = batches[0], batches[-1]
    assert (first["plugin"], first["revision"], first["backfill"]) == ("bf", "bf_0002", "items")
    assert first["rows_per_s"] > 0 and first["ms"] > 0
    assert first["estimated_total"] > 100_000  # the planner's estimate, never analyzed
    assert first["eta_s"] > 0 and last["eta_s"] is None
    [done] = [e for e in events if e["event"] == "backfill.done"]
    assert (done["rows_done"], done["batches"]) == (200_000, 10)
    applied = [e["revision"] for e in events if e["event"] == "revision.applied"]
    assert applied == ["bf_0002", "bf_0003"]


# -- kill -9 and rerun -----------------------------------------------------------------------


def test_kill_9_mid_backfill_then_rerun_resumes_from_the_checkpoint(
    database_url: str, items: Any, start_cli: Any, run_cli: Any, json_logs: Logs,
) -> None:
    """SIGKILL with a batch in flight keeps the committed batches; the rerun starts at once,
    while the killed run's batch is still running in its orphaned server session, waits for
    it (it holds the checkpoint row's lock), and resumes after the last committed batch: it
    does not start over, and every row is updated exactly once."""
    env = items(8000, TEST_BF_BATCH="1000", TEST_BF_TARGET="0", TEST_BF_NAP="0.5")
    process = start_cli("upgrade", env=env)
    wait_until(lambda: rows_done(database_url) >= 2000 and bool(backfill_backend(database_url)),
               "a batch in flight after two", process)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=DEADLINE)
    assert process.returncode == -signal.SIGKILL
    killed_at = rows_done(database_url)
    assert 2000 <= killed_at < 8000
    assert version_of(database_url, "bf") == ["bf_0001"]

    rerun = run_cli("upgrade", env={**env, "TEST_BF_NAP": "0.001"})
    assert rerun.returncode == 0, rerun.stderr
    assert counters(database_url) == {1: 8000}
    state = progress(database_url)
    assert (state["status"], state["rows_done"]) == ("done", 8000)

    # The orphaned batch either committed (after the kill) or rolled back: the rerun resumed
    # after whichever, never applying it twice.
    events = json_logs(rerun.stderr)
    [resumed] = [e for e in events if e["event"] == "backfill.resuming"]
    assert resumed["rows_done"] in (killed_at, killed_at + 1000)
    batches = [e for e in events if e["event"] == "backfill.batch"]
    assert sum(e["rows"] for e in batches) == 8000 - resumed["rows_done"]
    assert version_of(database_url, "bf") == ["bf_0003"]


def test_a_batch_waiting_on_a_concurrent_batch_that_commits_updates_nothing(
    database_url: str,
) -> None:
    """The one-statement batch locks its checkpoint before touching a row: while another
    session's batch holds it, it waits; when that batch commits and moves the checkpoint, it
    updates nothing and reports the checkpoint as moved (the next batch starts after it)."""
    from migrator import backfill_sql

    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE items (id integer PRIMARY KEY, counter integer NOT NULL "
                     "DEFAULT 0); INSERT INTO items (id) SELECT generate_series(1, 100)")
        records.ensure_schema(conn)
        spec = _validate("items", "counter = counter + 1", None, (), None, "id", None, None,
                         10, 0, 0, "30s", 10)
        state = backfill_sql.start(conn, "p", "r", spec)
        statements = backfill_sql.Statements(spec, conn)
        state = statements.run_batch(state, 10)
        assert (state.rows_done, state.batch_keys) == (10, 10)

        # A second copy of the same batch, in another session, holds the checkpoint row.
        with psycopg.connect(database_url) as other:
            other_statements = backfill_sql.Statements(spec, other)
            other_state = other_statements.run_batch(state, 10)  # in an open transaction
            assert other_state.rows_done == 20
            results: list[Any] = []
            waiter = threading.Thread(target=lambda: results.append(
                statements.run_batch(state, 10)))
            waiter.start()
            wait_until(lambda: bool(fetch(database_url, "SELECT 1 FROM pg_stat_activity "
                                          "WHERE wait_event_type = 'Lock' "
                                          "AND datname = current_database()")),
                       "the batch waiting for the checkpoint")
            other.commit()
            waiter.join(timeout=DEADLINE)
        [stale] = results
        assert stale.moved and stale.batch_keys == 0
        assert (stale.rows_done, stale.batches_done, stale.last_key) == (20, 2, ["20"])
        assert dict(conn.execute("SELECT counter, count(*) FROM items GROUP BY 1").fetchall()) \
            == {1: 20, 0: 80}
        following = statements.run_batch(stale, 10)
        assert (following.rows_done, following.last_key) == (30, ["30"])


# -- a terminated connection -----------------------------------------------------------------


def test_terminated_backfill_connection_stops_with_exit_4_and_the_rerun_resumes(
    database_url: str, items: Any, start_cli: Any, run_cli: Any,
) -> None:
    """pg_terminate_backend of the work session mid-batch takes the plugin's lock with it: the
    backfill does not reconnect (a peer may hold the lock by now), it stops with exit 4
    (retryable); the batch in flight rolled back with the connection, so the rerun resumes
    from the checkpoint and every row is updated exactly once."""
    env = items(10_000, TEST_BF_BATCH="500", TEST_BF_TARGET="0", TEST_BF_NAP="0.2")
    process = start_cli("upgrade", env=env)
    wait_until(lambda: rows_done(database_url) >= 1000 and bool(backfill_backend(database_url)),
               "a batch in flight after two", process)
    terminated = 0
    for pid in backfill_backend(database_url):
        terminated += fetch(database_url, "SELECT pg_terminate_backend(%s)", (pid,))[0][0]
    assert terminated >= 1
    _stdout, stderr = process.communicate(timeout=DEADLINE)

    assert process.returncode == 4, stderr
    [line] = error_lines(stderr)
    assert "lost the database connection" in line and "'bf'" in line and "rerun" in line
    assert version_of(database_url, "bf") == ["bf_0001"]
    done = progress(database_url)["rows_done"]
    assert counters(database_url) == {1: done, 0: 10_000 - done}

    rerun = run_cli("upgrade", env={**env, "TEST_BF_NAP": "0.001"})
    assert rerun.returncode == 0, rerun.stderr
    assert counters(database_url) == {1: 10_000}
    assert progress(database_url)["rows_done"] == 10_000
    assert version_of(database_url, "bf") == ["bf_0003"]


# -- statement timeout: split ----------------------------------------------------------------


def test_a_batch_over_the_statement_timeout_is_split_in_half_and_retried(
    database_url: str, items: Any, run_cli: Any, json_logs: Logs,
) -> None:
    """400 rows at 4 ms each exceed a 1 s statement_timeout: the batch is cancelled, halved,
    retried, and the walk completes with every row updated once."""
    env = items(600, TEST_BF_BATCH="400", TEST_BF_TARGET="0", TEST_BF_ROW_NAP="0.004",
                TEST_BF_STATEMENT_TIMEOUT="1s")
    result = run_cli("upgrade", env=env)
    assert result.returncode == 0, result.stderr

    events = json_logs(result.stderr)
    splits = [e for e in events if e["event"] == "backfill.retry" and e["action"] == "split"]
    assert splits, result.stderr
    assert splits[0]["batch_size"] == 200 and splits[0]["sqlstate"] == "57014"
    assert "statement timeout" in splits[0]["error"]
    sizes = [e["batch_size"] for e in events if e["event"] == "backfill.batch"]
    assert sizes and max(sizes) <= 200
    assert counters(database_url) == {1: 600}
    assert progress(database_url)["rows_done"] == 600


# -- rows locked by another session ----------------------------------------------------------


def test_rows_locked_by_another_session_fail_past_max_retries_then_resume_when_released(
    database_url: str, items: Any, run_cli: Any, start_cli: Any, json_logs: Logs,
) -> None:
    """A row held FOR UPDATE by another session makes its batch hit lock_timeout. With few
    retries the run exits 1 naming plugin, revision and the batch's key range, keeping the
    batches done; status lists the backfill as failed. The next run resumes, retries while
    the row is held, and completes once it is released."""
    env = items(2000, TEST_BF_BATCH="500", TEST_BF_TARGET="0")
    with psycopg.connect(database_url, application_name="bf-test-locker") as locker:
        locker.execute("SELECT 1 FROM bf.items WHERE id = 1200 FOR UPDATE")
        failed = run_cli("upgrade", "--lock-timeout", "200ms",
                         env={**env, "TEST_BF_MAX_RETRIES": "2"})
        assert failed.returncode == 1, failed.stderr
        assert "Traceback" not in failed.stderr
        [line] = error_lines(failed.stderr)
        assert "'bf'" in line and "bf_0002" in line and "'items'" in line
        assert "after key (1000)" in line and "up to 500 rows" in line
        assert "lock timeout" in line and "rerun to resume" in line
        retries = [e for e in json_logs(failed.stderr) if e["event"] == "backfill.retry"]
        assert [e["attempt"] for e in retries] == [1, 2]
        assert {e["sqlstate"] for e in retries} == {"55P03"}

        assert version_of(database_url, "bf") == ["bf_0001"]
        assert progress(database_url)["status"] == "failed"
        assert progress(database_url)["rows_done"] == 1000
        assert counters(database_url) == {1: 1000, 0: 1000}
        status = run_cli("status", "--format", "json", env=env)
        assert status.returncode == 0, status.stderr
        [unfinished] = json.loads(status.stdout)["backfills"]
        assert (unfinished["plugin"], unfinished["revision"], unfinished["name"],
                unfinished["status"], unfinished["rows_done"]) == (
            "bf", "bf_0002", "items", "failed", 1000)

        process = start_cli("upgrade", "--lock-timeout", "200ms", env=env)
        wait_until(lambda: bool(fetch(
            database_url, "SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND application_name LIKE 'migrator@%%' AND datname = current_database()")),
            "the backfill waiting on the locked row", process)
        time.sleep(0.5)  # long enough for a lock timeout and a retry
        locker.rollback()
        _stdout, stderr = process.communicate(timeout=DEADLINE)

    assert process.returncode == 0, stderr
    events = json_logs(stderr)
    [resumed] = [e for e in events if e["event"] == "backfill.resuming"]
    assert resumed["rows_done"] == 1000
    retries = [e for e in events if e["event"] == "backfill.retry"]
    assert retries and all(e["action"] == "retry" for e in retries)
    assert counters(database_url) == {1: 2000}
    assert progress(database_url)["status"] == "done"
    assert version_of(database_url, "bf") == ["bf_0003"]


# -- SIGTERM ---------------------------------------------------------------------------------


def test_sigterm_finishes_the_batch_exits_6_and_the_rerun_resumes(
    database_url: str, items: Any, start_cli: Any, run_cli: Any, json_logs: Logs,
) -> None:
    """SIGTERM mid-batch: the batch commits with its checkpoint, no batch is half-applied, the
    locks are released, exit 6; status shows the rows done; the rerun resumes. Rows inserted
    after the walk started (above its bound) are the application's and are not touched."""
    env = items(10_000, TEST_BF_BATCH="500", TEST_BF_TARGET="0", TEST_BF_NAP="0.2")
    process = start_cli("upgrade", env=env)
    wait_until(lambda: rows_done(database_url) >= 1000 and bool(backfill_backend(database_url)),
               "a batch in flight after two", process)
    in_flight_after = rows_done(database_url)
    process.send_signal(signal.SIGTERM)
    _stdout, stderr = process.communicate(timeout=DEADLINE)

    assert process.returncode == 6, stderr
    assert "Traceback" not in stderr
    [line] = error_lines(stderr)
    assert "'bf'" in line and "bf_0002" in line and "'items'" in line
    assert "progress is saved, rerun to resume" in line
    done = progress(database_url)
    assert done["status"] == "paused"
    assert done["rows_done"] >= in_flight_after + 500  # the batch in flight was finished
    assert done["rows_done"] % 500 == 0 and done["rows_done"] < 10_000
    assert counters(database_url) == {1: done["rows_done"], 0: 10_000 - done["rows_done"]}
    events = json_logs(stderr)
    assert [e for e in events if e["event"] == "backfill.batch"][-1]["rows_done"] == \
        done["rows_done"]
    assert version_of(database_url, "bf") == ["bf_0001"]
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute("SELECT pg_try_advisory_lock(%s)", (plugin_key("bf"),)).fetchone()
        assert row == (True,)
        conn.execute("SELECT pg_advisory_unlock(%s)", (plugin_key("bf"),))
    assert not backfill_backend(database_url)

    status = run_cli("status", "--format", "json", env=env)
    [unfinished] = json.loads(status.stdout)["backfills"]
    assert (unfinished["status"], unfinished["rows_done"]) == ("paused", done["rows_done"])

    fetch(database_url, "INSERT INTO bf.items (id, payload) VALUES (10001, '{\"name\": \"new\"}') "
          "RETURNING id")
    rerun = run_cli("upgrade", env={**env, "TEST_BF_NAP": "0.001"})
    assert rerun.returncode == 0, rerun.stderr
    assert counters(database_url) == {1: 10_000, 0: 1}
    assert fetch(database_url, "SELECT counter, filled FROM bf.items WHERE id = 10001") == [
        (0, None)]
    [resumed] = [e for e in json_logs(rerun.stderr) if e["event"] == "backfill.resuming"]
    assert resumed["rows_done"] == done["rows_done"]
    assert version_of(database_url, "bf") == ["bf_0003"]
    after = run_cli("status", "--format", "json", env=env)
    assert "backfills" not in json.loads(after.stdout)


# -- refused next to DDL ---------------------------------------------------------------------


def test_backfill_after_schema_changes_in_the_same_revision_fails_and_rolls_back(
    database_url: str, tree: Tree, run_cli: Any, cli_env: dict[str, str],
) -> None:
    """A backfill called after ADD COLUMN in the same revision fails that revision with exit 1
    and a message to split it; the column is rolled back and no progress row is written."""
    env = cli_env_for(cli_env, database_url, tree("bf_mixed"))
    result = run_cli("upgrade", env=env)

    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    [line] = error_lines(result.stderr)
    assert "'mixed'" in line and "mixed_0002" in line
    assert "move the schema change into a revision of its own" in line
    assert version_of(database_url, "mixed") == ["mixed_0001"]
    assert fetch(database_url, "SELECT column_name FROM information_schema.columns "
                 "WHERE table_schema = 'mixed' AND table_name = 'items' ORDER BY 1") == [
        ("id",), ("payload",)]
    assert fetch(database_url, "SELECT count(*) FROM migrator.backfill_progress") == [(0,)]
    assert fetch(database_url, "SELECT revision, outcome FROM migrator.history "
                 "WHERE plugin = 'mixed' ORDER BY id") == [
        ("mixed_0001", "applied"), ("mixed_0002", "failed")]


# -- composite key and Python form (in process) ----------------------------------------------


def test_composite_key_walks_in_key_order_with_params_and_where(
    database_url: str, tree: Tree,
) -> None:
    """key=("plate", "well"): 1,152 rows in 50-row batches cross plate boundaries, each row
    updated once, `:scale` bound from params, the checkpoint at the largest key in text order."""
    runs.upgrade(settings_for(database_url, tree("bf_composite")))

    assert fetch(database_url, "SELECT counter, count(*) FROM pairs.readings GROUP BY 1") == [
        (1, 1152)]
    assert fetch(database_url, "SELECT count(*) FROM pairs.readings "
                 "WHERE value <> (raw->>'od')::numeric / 1000") == [(0,)]
    state = progress(database_url, "pairs")
    assert state == {"status": "done", "rows_done": 1152, "batches_done": 24,
                     "last_key": ["P9", "96"], "upper_key": ["P9", "96"]}


def test_python_form_transforms_rows_and_skips_those_it_returns_none_for(
    database_url: str, tree: Tree,
) -> None:
    """transform= over (full_name, counter): 900 named people get a slug in 128-row batches,
    the 100 unnamed ones are left alone, and the uuid key checkpoints as PostgreSQL spells it."""
    runs.upgrade(settings_for(database_url, tree("bf_python")))

    rows = fetch(database_url, "SELECT full_name IS NULL, counter, slug IS NULL, count(*) "
                 "FROM people.people GROUP BY 1, 2, 3 ORDER BY 1")
    assert rows == [(False, 1, False, 900), (True, 0, True, 100)]
    assert fetch(database_url, "SELECT slug FROM people.people WHERE full_name = "
                 "'Ádám  Nagy-1'") == [("adam-nagy-1",)]
    state = progress(database_url, "people")
    [(largest,)] = fetch(database_url, "SELECT id::text FROM people.people ORDER BY id DESC "
                         "LIMIT 1")
    assert state == {"status": "done", "rows_done": 900, "batches_done": 8,
                     "last_key": [largest], "upper_key": [largest]}


# -- isolate roles, downgrade ----------------------------------------------------------------


def test_under_isolate_roles_the_backfill_runs_as_the_plugin_role(
    database_url: str, items: Any, run_cli: Any,
) -> None:
    """With --isolate-roles the batches run under SET ROLE bf_owner (current_user in them)."""
    env = items(100, TEST_BF_FILL="current_user")
    result = run_cli("upgrade", "--isolate-roles", env=env)
    assert result.returncode == 0, result.stderr
    assert fetch(database_url, "SELECT filled, counter, count(*) FROM bf.items "
                 "GROUP BY 1, 2") == [("bf_owner", 1, 100)]


def test_downgrading_a_backfill_revision_forgets_its_checkpoint(
    database_url: str, items: Any,
) -> None:
    """Reverting the revision drops its checkpoint, so upgrading again backfills again."""
    env = items(300)
    settings = settings_for(database_url, Path(env["MIGRATOR_MIGRATIONS_DIR"]))
    runs.upgrade(settings)
    assert counters(database_url) == {1: 300}
    runs.downgrade(settings, "bf", "bf_0001")
    assert fetch(database_url, "SELECT count(*) FROM migrator.backfill_progress") == [(0,)]
    runs.upgrade(settings)
    assert counters(database_url) == {2: 300}
    assert progress(database_url)["status"] == "done"


# -- no database: arguments and the batch-size controller ------------------------------------


@pytest.mark.parametrize(("kwargs", "message"), [
    ({}, "give exactly one of set="),
    ({"set": "a = 1", "transform": lambda rows: rows}, "give exactly one of set="),
    ({"set": "a = 1", "batch_size": 0}, "batch_size must be a whole number"),
    ({"set": "a = 1", "pause": "soon"}, "pause: 'soon' is not a duration"),
    ({"set": "a = 1", "statement_timeout": "-1s"}, "statement_timeout"),
    ({"set": "a = 1", "key": ()}, "key at least one column"),
    ({"set": "a = 1", "max_retries": -1}, "max_retries must not be negative"),
])
def test_bad_arguments_are_a_backfill_error_naming_the_table(
    kwargs: dict[str, Any], message: str,
) -> None:
    """Wrong arguments fail the revision (exit 1) with the table and what to change."""
    with pytest.raises(BackfillError) as caught:
        backfill("events", **kwargs)
    assert "backfill('events')" in str(caught.value) and message in str(caught.value)
    assert caught.value.exit_code == 1


def test_batch_size_alone_is_fixed_with_a_target_it_adapts_neither_is_the_default() -> None:
    """The contract: an explicit batch_size alone is a fixed size; with target_batch_time it
    starts there and adapts; with neither, 1000 adapting toward the 50 ms default target."""
    def spec(size: int | None, target: Any) -> Any:
        return _validate("t", "a = 1", None, (), None, "id", None, None, size, 0, target,
                         "30s", 10)
    fixed = spec(5000, None)
    assert (fixed.batch_size, fixed.target_batch_time) == (5000, None)
    default = spec(None, None)
    assert (default.batch_size, default.target_batch_time) == (1000, DEFAULT_TARGET_BATCH_TIME)
    assert DEFAULT_TARGET_BATCH_TIME == 0.05
    assert spec(5000, "250ms").target_batch_time == 0.25
    assert spec(None, 0).target_batch_time is None


def test_batch_sizer_grows_fast_then_settles_at_the_target_and_drops_after_a_slow_batch(
) -> None:
    """Batches far under the target grow the size up to 4x a step, nearer it by at most 1.5x;
    a batch far over the target sizes the next one from itself (at most /8), one a little
    over shrinks it by at most half; it settles near the target within [MIN_BATCH,
    MAX_BATCH]; a retried lock conflict and a statement timeout halve it."""
    sizer = BatchSizer(1000, 0.05)
    sizes = [sizer.observe(sizer.size, sizer.size * 1e-6) for _ in range(8)]  # 1 µs a row
    assert sizes[:4] == [4000, 16_000, 24_000, 36_000]  # x4 under 12.5 ms, then x1.5
    assert all(b <= a * 4 for a, b in zip([1000, *sizes], sizes, strict=False))
    for _ in range(30):
        sizer.observe(sizer.size, sizer.size * 1e-6)
    assert 49_000 <= sizer.size <= 51_000  # 50 ms at 1 µs a row
    for _ in range(30):
        sizer.observe(sizer.size, sizer.size * 1e-8)
    assert sizer.size == MAX_BATCH

    slow = BatchSizer(10_000, 0.05)
    assert slow.observe(10_000, 2.0) == 1250  # 40x over target: an eighth at once
    assert slow.observe(1250, 0.25) == 250  # 5x over: what that batch says (50 ms / 200 µs)
    for _ in range(40):
        slow.observe(slow.size, slow.size * 200e-6)
    assert 240 <= slow.size <= 260

    over = BatchSizer(10_000, 0.05)
    assert over.observe(10_000, 0.09) == 5555  # under 2x the target: smoothed, gradual
    assert over.observe(5555, 0.3) == 925  # 6x over: straight to what it measured
    assert over.contended() == 462

    tiny = BatchSizer(20, 0.05)
    for _ in range(10):
        tiny.observe(tiny.size, tiny.size * 0.1)
    assert tiny.size == MIN_BATCH

    fixed = BatchSizer(500, None)
    assert fixed.observe(500, 10.0) == 500
    assert fixed.split() == 250 and fixed.split() == 125

    ending = BatchSizer(1000, 0.05)
    assert ending.observe(3, 0.0001) == 1000  # a short last batch says nothing about growth


def test_progress_has_the_true_total_counted_when_the_walk_starts(
    database_url: str, items: Any, run_cli: Any, json_logs: Logs,
) -> None:
    """The total in `backfill.batch` events (the progress bar's) is the real count of rows
    to update, not the planner's estimate: rows deleted since the last ANALYZE do not count."""
    env = items(3000, TEST_BF_BATCH="500", TEST_BF_TARGET="0")
    fetch(database_url, "ANALYZE bf.items")
    fetch(database_url, "DELETE FROM bf.items WHERE id > 1000")  # the estimate still says 3000
    result = run_cli("upgrade", env=env)
    assert result.returncode == 0, result.stderr
    batches = [e for e in json_logs(result.stderr) if e["event"] == "backfill.batch"]
    assert {e["total_rows"] for e in batches} == {1000}
    assert batches[-1]["rows_done"] == 1000
    assert progress(database_url)["rows_done"] == 1000
