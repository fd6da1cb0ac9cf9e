"""Several runners at once: real `migrator upgrade` processes racing on one real database."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
from helpers import error_lines, fetch, version_of
from psycopg import sql

from migrator.locking import plugin_key

RUNNERS = 8
STAMPEDE = {p: [f"{p}_000{n}" for n in (1, 2, 3)] for p in ("alpha", "beta", "gamma")}
Logs = Callable[[str], list[dict[str, Any]]]


def cli_env_for(cli_env: dict[str, str], database_url: str, tree: Path) -> dict[str, str]:
    return {**cli_env, "MIGRATOR_DATABASE_URL": database_url,
            "MIGRATOR_MIGRATIONS_DIR": str(tree)}


def test_eight_runners_apply_each_revision_exactly_once(
    database_url: str, tree: Callable[[str], Path], start_cli: Any, cli_env: dict[str, str],
    json_logs: Logs,
) -> None:
    """Eight upgrades started at once all succeed, and every revision runs exactly once."""
    env = cli_env_for(cli_env, database_url, tree("conc_stampede"))
    processes = [start_cli("upgrade", env=env) for _ in range(RUNNERS)]
    results = [(p, *p.communicate(timeout=180)) for p in processes]

    applied: Counter[tuple[str, str]] = Counter()
    waits: list[dict[str, Any]] = []
    for process, _stdout, stderr in results:
        assert process.returncode == 0, stderr
        assert "Traceback" not in stderr
        events = json_logs(stderr)
        applied.update((e["plugin"], e["revision"]) for e in events
                       if e["event"] == "revision.applied")
        waits += [e for e in events if e["event"] == "lock.waiting"]
        finished = [e for e in events if e["event"] == "run.finished"]
        assert len(finished) == 1 and finished[0]["outcome"] == "success", stderr
        # Each runner either did some of the work, or waited for a peer, or found it all done.
        did_work = any(e["event"] == "revision.applied" for e in events)
        waited = any(e["event"] == "lock.waiting" for e in events)
        found_done = all(p["outcome"] == "up_to_date" for p in finished[0]["plugins"])
        assert did_work or waited or found_done, stderr

    expected = {(plugin, rev) for plugin, revs in STAMPEDE.items() for rev in revs}
    assert set(applied) == expected
    assert all(count == 1 for count in applied.values()), applied

    # The runners overlapped, and waiters said who held the lock they waited for.
    assert waits, "no runner ever waited for a plugin lock: the runs did not overlap"
    named = [w for w in waits if "holder_pid" in w]
    assert named, waits
    for wait in named:
        assert isinstance(wait["holder_pid"], int)
        assert wait["holder_application_name"].startswith("migrator@"), wait
        assert wait["plugin"] in STAMPEDE

    for plugin, revisions in STAMPEDE.items():
        assert version_of(database_url, plugin) == [revisions[-1]]
        side_effects = fetch(database_url, sql.SQL(
            "SELECT revision, count(*) FROM {} GROUP BY revision ORDER BY revision").format(
                sql.Identifier(plugin, "applied")))
        assert side_effects == [(rev, 1) for rev in revisions]
    history = fetch(database_url,
                    "SELECT plugin, revision, outcome, count(*) FROM migrator.history "
                    "WHERE direction = 'up' GROUP BY 1, 2, 3 ORDER BY 1, 2, 3")
    assert history == sorted((plugin, rev, "applied", 1) for plugin, rev in expected)


def test_waiter_gives_up_after_lock_wait_naming_the_holder(
    database_url: str, tree: Callable[[str], Path], start_cli: Any, cli_env: dict[str, str],
    json_logs: Logs,
) -> None:
    """A runner that cannot get a plugin's lock within --lock-wait exits 3 naming the holder."""
    env = cli_env_for(cli_env, database_url, tree("conc_lock_wait"))
    with psycopg.connect(database_url, autocommit=True,
                         application_name="conc-test-holder") as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", (plugin_key("waiter"),))
        holder_pid = holder.info.backend_pid

        started = time.monotonic()
        process = start_cli("upgrade", "--lock-wait", "2s", env=env)
        # While it waits, the waiter holds no open transaction (it polls in autocommit). Sampled
        # only once the `migrator` schema's creation (a short transaction) has committed.
        idle_in_transaction: list[Any] = []
        samples = 0
        while process.poll() is None and time.monotonic() - started < 60:
            time.sleep(0.05)
            bootstrapped = holder.execute(
                "SELECT to_regclass('migrator.backfill_progress') IS NOT NULL").fetchone()
            if not bootstrapped or not bootstrapped[0]:
                continue
            idle_in_transaction += holder.execute(
                "SELECT pid, state FROM pg_stat_activity WHERE datname = current_database() "
                "AND application_name LIKE 'migrator@%' AND state LIKE 'idle in transaction%'"
            ).fetchall()
            samples += 1
        _stdout, stderr = process.communicate(timeout=60)
        elapsed = time.monotonic() - started

    assert process.returncode == 3, stderr
    assert elapsed < 15, f"took {elapsed:.1f}s to give up after --lock-wait 2s"
    assert samples > 0 and idle_in_transaction == []
    assert "Traceback" not in stderr

    waiting = [e for e in json_logs(stderr) if e["event"] == "lock.waiting"]
    assert waiting, stderr
    assert waiting[0]["plugin"] == "waiter"
    assert waiting[0]["holder_pid"] == holder_pid
    assert waiting[0]["holder_application_name"] == "conc-test-holder"

    [line] = error_lines(stderr)
    assert "'waiter'" in line
    assert f"pid {holder_pid}" in line
    assert "--lock-wait" in line  # what to do next

    # Nothing was applied: no version table, no table, no history row.
    assert fetch(database_url, "SELECT to_regclass('waiter.alembic_version'), "
                 "to_regclass('waiter.jobs')") == [(None, None)]
    if fetch(database_url, "SELECT to_regclass('migrator.history')") != [(None,)]:
        assert fetch(database_url, "SELECT * FROM migrator.history WHERE plugin = 'waiter'") == []
