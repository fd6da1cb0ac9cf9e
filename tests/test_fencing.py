"""The lock fences the work (DESIGN.md "How a run goes" 4), signals always end in exit 6, and
a `--jobs` worker's death is never a success.

The revision in these trees writes its own trace — start, end, or abort, with the runner's
process id — on a side connection of its own (autocommitted, so a rollback of the revision
cannot erase it), which lets the tests see from inside the revision whether two runners ever
ran its body at the same time.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
from helpers import DEADLINE, error_lines, fetch, version_of, wait_until
from treebuilder import Rev, write_plugin

from migrator.locking import plugin_key

TRACED = '''
import os
import psycopg as _psycopg

def trace(what):
    with _psycopg.connect(os.environ["MIGRATOR_DATABASE_URL"], autocommit=True) as side:
        side.execute("INSERT INTO public.trace VALUES (%s, %s, clock_timestamp())",
                     (what, os.getpid()))

trace("start")
try:
    op.execute("SELECT pg_sleep(" + os.environ.get("TEST_SLEEP", "0") + ")")
    op.create_table("work", sa.Column("id", sa.Integer))
except BaseException:
    trace("abort")
    raise
trace("end")
'''


@pytest.fixture
def traced(database_url: str, tmp_path: Path, cli_env: dict[str, str]) -> dict[str, str]:
    """A one-revision plugin whose revision traces itself; the CLI environment for it."""
    fetch(database_url, "CREATE TABLE public.trace (what text, pid int, at timestamptz)")
    write_plugin(tmp_path / "plugins", "fenced", [Rev("f1", None, TRACED)])
    return {**cli_env, "MIGRATOR_DATABASE_URL": database_url,
            "MIGRATOR_MIGRATIONS_DIR": str(tmp_path / "plugins")}


def trace(url: str) -> list[tuple[str, int, Any]]:
    return [tuple(r) for r in fetch(url, "SELECT what, pid, at FROM public.trace ORDER BY at")]


def lock_holder(url: str) -> list[int]:
    classid, objid = divmod(plugin_key("fenced") & 0xFFFFFFFFFFFFFFFF, 1 << 32)
    return [r[0] for r in fetch(
        url, "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND "
        "classid::bigint = %s AND objid::bigint = %s AND database = (SELECT oid FROM "
        "pg_database WHERE datname = current_database())", (classid, objid))]


def migrator_sessions(url: str) -> int:
    return int(fetch(url, "SELECT count(*) FROM pg_stat_activity WHERE datname = "
                     "current_database() AND application_name LIKE 'migrator@%%'")[0][0])


@pytest.mark.parametrize("trial", range(3))
def test_terminating_the_lock_holder_mid_revision_never_lets_two_runners_overlap(
    database_url: str, traced: dict[str, str], start_cli: Any, trial: int,
) -> None:
    """Runner A is inside the revision (in pg_sleep); runner B waits for the lock. The lock
    holder's session is terminated: that is A's work session, so A's revision aborts with it
    and A exits 4 (retryable); only then can B take the lock and run the revision, once."""
    first = start_cli("upgrade", env={**traced, "TEST_SLEEP": "60"})
    wait_until(lambda: [r[0] for r in trace(database_url)] == ["start"], "A in the revision",
               first)
    second = start_cli("upgrade", "--lock-wait", "120s", env={**traced, "TEST_SLEEP": "0"})
    wait_until(lambda: migrator_sessions(database_url) >= 2, "B waiting for the lock", second)
    [holder] = lock_holder(database_url)
    terminated_at = fetch(database_url, "SELECT clock_timestamp()")[0][0]
    assert fetch(database_url, "SELECT pg_terminate_backend(%s)", (holder,)) == [(True,)]

    _out, first_err = first.communicate(timeout=DEADLINE)
    _out, second_err = second.communicate(timeout=DEADLINE)
    assert first.returncode == 4, first_err
    assert "lost the database connection" in error_lines(first_err)[0]
    assert second.returncode == 0, second_err

    events = trace(database_url)
    a, b = first.pid, second.pid
    assert [(what, pid) for what, pid, _ in events] == [
        ("start", a), ("abort", a), ("start", b), ("end", b)]
    b_start = events[2][2]
    assert b_start > terminated_at  # B's body began only after A's session (and lock) died
    assert version_of(database_url, "fenced") == ["f1"]
    assert fetch(database_url, "SELECT count(*) FROM migrator.history WHERE plugin = 'fenced' "
                 "AND outcome = 'applied'") == [(1,)]


def test_idle_timeouts_on_the_database_do_not_touch_migrators_sessions(
    database_url: str, traced: dict[str, str], run_cli: Any,
) -> None:
    """A revision that spends time in Python (here: 2 s) survives a database whose sessions
    are cut after 1 s idle, in or out of a transaction."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        name = conn.info.dbname
        conn.execute(f'ALTER DATABASE "{name}" SET idle_in_transaction_session_timeout = '
                     "'1s'")
        conn.execute(f"ALTER DATABASE \"{name}\" SET idle_session_timeout = '1s'")
    slow = TRACED.replace('trace("end")', 'import time\ntime.sleep(2)\ntrace("end")')
    write_plugin(Path(traced["MIGRATOR_MIGRATIONS_DIR"]), "fenced", [Rev("f1", None, slow)])
    result = run_cli("upgrade", env=traced)
    assert result.returncode == 0, result.stderr
    assert version_of(database_url, "fenced") == ["f1"]


def test_any_number_of_signals_ends_in_exit_6_and_an_interrupted_summary(
    database_url: str, traced: dict[str, str], start_cli: Any, json_logs: Any,
) -> None:
    """Two SIGTERMs during a long statement: the second cancels it (rolled back), the run
    ends with exit 6 and the outcome `interrupted`, nothing stamped; a rerun applies it."""
    process = start_cli("upgrade", env={**traced, "TEST_SLEEP": "60"})
    # The revision's long statement is running (a signal before it would find nothing to
    # cancel): the second signal must cut it short.
    wait_until(lambda: bool(fetch(database_url, "SELECT 1 FROM pg_stat_activity WHERE "
                                  "query LIKE 'SELECT pg_sleep(60%%' AND state = 'active' "
                                  "AND datname = current_database()")),
               "the revision's statement running", process)
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    process.send_signal(signal.SIGTERM)
    process.send_signal(signal.SIGINT)
    _out, stderr = process.communicate(timeout=DEADLINE)
    assert process.returncode == 6, stderr
    assert time.monotonic() - started < 30  # the 60 s statement was cancelled
    [finished] = [e for e in json_logs(stderr) if e["event"] == "run.finished"]
    assert finished["outcome"] == "interrupted"
    assert [p["outcome"] for p in finished["plugins"]] == ["interrupted"]
    assert version_of(database_url, "fenced") == []
    assert [r[0] for r in trace(database_url)] == ["start", "abort"]


def test_a_killed_jobs_worker_is_named_with_its_signal_and_never_a_success(
    database_url: str, run_cli: Any, cli_env: dict[str, str], tmp_path: Path,
    json_logs: Any,
) -> None:
    root = tmp_path / "plugins"
    write_plugin(root, "doomed", [Rev("d1", None, "import os, signal\n"
                                                  "os.kill(os.getpid(), signal.SIGKILL)")])
    write_plugin(root, "fine", [Rev("ok1", None, "pass")])
    termination = tmp_path / "termination-log"
    result = run_cli("upgrade", "--jobs", "2",
                     env={**cli_env, "MIGRATOR_DATABASE_URL": database_url,
                          "MIGRATOR_MIGRATIONS_DIR": str(root),
                          "MIGRATOR_TERMINATION_LOG": str(termination)})
    assert result.returncode == 1, result.stderr
    [line] = error_lines(result.stderr)
    assert "'doomed'" in line and "SIGKILL" in line, line
    document = json.loads(termination.read_text())
    assert document["outcome"] == "failed"
    outcomes = {p["plugin"]: p["outcome"] for p in document["plugins"]}
    assert outcomes["doomed"] == "failed"
    assert version_of(database_url, "doomed") == []


def test_a_lock_not_visible_from_the_next_transactions_session_is_a_pooler_exit_2(
    database_url: str,
) -> None:
    """Behind PgBouncer in transaction mode, the lock taken in one transaction is held by a
    server session the next transaction may not reach. The fence check sees exactly that
    state — the lock held by another backend, not this one — and refuses with exit 2."""
    from migrator import db
    from migrator.errors import PoolerDetected

    with psycopg.connect(database_url, autocommit=True) as holder, \
            psycopg.connect(database_url) as other:
        holder.execute("SELECT pg_advisory_lock(%s)", (plugin_key("fenced"),))
        session = db.WorkSession(other, lock_timeout=5)
        session.locked = "fenced"  # what a pooled client believes after taking it
        with pytest.raises(PoolerDetected) as refused:
            session.check_fence()
        assert refused.value.exit_code == 2
        assert "PgBouncer" in str(refused.value) and "session mode" in str(refused.value)

        other.autocommit = True
        other.execute("SELECT pg_advisory_unlock_all()")
        holder.execute("SELECT pg_advisory_unlock(%s)", (plugin_key("fenced"),))
        other.execute("SELECT pg_advisory_lock(%s)", (plugin_key("fenced"),))
        other.autocommit = False
        session.check_fence()  # held where the next transaction runs: fine
