"""`--jobs`: a pool of worker processes forked once per run. Workers keep their session
across plugins, dependencies run first, a broken tree stops the run before anything is
applied, and log lines of several processes never interleave."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

from helpers import error_lines, fetch, version_of, wait_until
from treebuilder import Rev, write_plugin

PLUGINS = 8


def env_for(cli_env: dict[str, str], database_url: str, root: Path) -> dict[str, str]:
    return {**cli_env, "MIGRATOR_DATABASE_URL": database_url,
            "MIGRATOR_MIGRATIONS_DIR": str(root)}


def recording_backend(tag: str) -> str:
    """A revision body that records which server session ran it, and when."""
    return ("op.execute(\"INSERT INTO public.ran (tag, pid) "
            f"VALUES ('{tag}', pg_backend_pid())\")")


def test_a_pool_of_two_runs_every_plugin_on_two_sessions_dependencies_first(
    database_url: str, run_cli: Any, cli_env: dict[str, str], tmp_path: Path, json_logs: Any,
) -> None:
    fetch(database_url, "CREATE TABLE public.ran (n serial, tag text, pid int)")
    root = tmp_path / "plugins"
    for number in range(PLUGINS):
        write_plugin(root, f"p{number}", [Rev(f"p{number}a", None, recording_backend(
            f"p{number}"))], toml='depends_on = ["p0"]' if number == PLUGINS - 1 else "")
    result = run_cli("upgrade", "--jobs", "2", env=env_for(cli_env, database_url, root))
    assert result.returncode == 0, result.stderr
    ran = fetch(database_url, "SELECT tag, pid FROM public.ran ORDER BY n")
    assert sorted(tag for tag, _ in ran) == sorted(f"p{n}" for n in range(PLUGINS))
    # One session per worker, kept from plugin to plugin (a process per plugin gave eight).
    assert len({pid for _, pid in ran}) == 2, ran
    tags = [tag for tag, _ in ran]
    assert tags.index("p0") < tags.index(f"p{PLUGINS - 1}")
    finished = [e for e in json_logs(result.stderr) if e["event"] == "run.finished"]
    assert [p["outcome"] for p in finished[0]["plugins"]] == ["applied"] * PLUGINS


def test_jobs_default_to_two_workers_on_this_machine(
    database_url: str, run_cli: Any, cli_env: dict[str, str], tmp_path: Path,
) -> None:
    """Without --jobs, independent plugins run on min(CPUs, 2) workers (CI has 2 cores)."""
    fetch(database_url, "CREATE TABLE public.ran (n serial, tag text, pid int)")
    root = tmp_path / "plugins"
    for number in range(4):
        write_plugin(root, f"p{number}", [Rev(f"p{number}a", None, recording_backend("x"))])
    result = run_cli("upgrade", env=env_for(cli_env, database_url, root))
    assert result.returncode == 0, result.stderr
    expected = min(len(os.sched_getaffinity(0)), 2)
    assert len({pid for _, pid in fetch(database_url, "SELECT tag, pid FROM public.ran")}) \
        == expected


def test_a_broken_revision_file_stops_a_jobs_run_before_anything_is_applied(
    database_url: str, run_cli: Any, cli_env: dict[str, str], tmp_path: Path,
) -> None:
    root = tmp_path / "plugins"
    for number in range(3):
        write_plugin(root, f"p{number}", [Rev(f"p{number}a", None, "pass")])
    broken = root / "p2" / "versions" / "0002_broken.py"
    broken.write_text('revision = "p2b"\ndown_revision = "p2a"\nimport no_such_module\n')
    result = run_cli("upgrade", "--jobs", "2", env=env_for(cli_env, database_url, root))
    assert result.returncode == 2, result.stderr
    [line] = error_lines(result.stderr)
    assert "0002_broken.py:3" in line and "no_such_module" in line
    assert fetch(database_url, "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'p_'") == []


def test_log_lines_of_several_workers_never_interleave(
    database_url: str, run_cli: Any, cli_env: dict[str, str], tmp_path: Path, json_logs: Any,
) -> None:
    """Each revision logs a 20 KB event (a pipe keeps only 4 KiB writes whole): every line of
    a two-worker run is still one whole JSON object."""
    root = tmp_path / "plugins"
    note = ("from migrator.logs import get_logger\n"
            "get_logger().info('test.note', blob=revision * 5000)")
    for number in range(6):
        write_plugin(root, f"p{number}", [
            Rev(f"p{number}r{k}", f"p{number}r{k - 1}" if k else None, note)
            for k in range(5)])
    result = run_cli("upgrade", "--jobs", "2", env=env_for(cli_env, database_url, root))
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stderr.splitlines()]  # no torn line
    notes = [e for e in events if e["event"] == "test.note"]
    assert len(notes) == 30
    assert all(len(e["blob"]) == 20_000 for e in notes)
    assert len([e for e in events if e["event"] == "revision.applied"]) == 30


def test_a_failure_in_a_worker_is_logged_with_its_own_error_type(
    database_url: str, run_cli: Any, cli_env: dict[str, str], tmp_path: Path, json_logs: Any,
) -> None:
    root = tmp_path / "plugins"
    write_plugin(root, "bad", [Rev("b1", None, "raise RuntimeError('no')")])
    write_plugin(root, "good", [Rev("g1", None, "pass")])
    result = run_cli("upgrade", "--jobs", "2", env=env_for(cli_env, database_url, root))
    assert result.returncode == 1
    [failed] = [e for e in json_logs(result.stderr) if e["event"] == "command.failed"]
    assert failed["error_type"] == "MigrationFailed"
    assert version_of(database_url, "good") == ["g1"]


def alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_killing_the_run_takes_its_workers_with_it(
    database_url: str, start_cli: Any, cli_env: dict[str, str], tmp_path: Path,
) -> None:
    """kill -9 of the main process kills its workers too (no orphan keeps migrating once its
    run is gone); what they were doing is rolled back, nothing is stamped."""
    root = tmp_path / "plugins"
    for name in ("slow_a", "slow_b"):
        write_plugin(root, name, [Rev(f"{name}1", None,
                                      'op.create_table("t", sa.Column("id", sa.Integer))\n'
                                      'op.execute("SELECT pg_sleep(600)")')])
    process = start_cli("upgrade", "--jobs", "2", env=env_for(cli_env, database_url, root))
    sleeping = ("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND query LIKE 'SELECT pg_sleep(600)%%' AND state = 'active'")
    wait_until(lambda: len(fetch(database_url, sleeping)) == 2, "both workers in their revision",
               process)
    children = f"/proc/{process.pid}/task/{process.pid}/children"
    with open(children) as listed:
        workers = [int(pid) for pid in listed.read().split()]
    assert len(workers) == 2
    process.send_signal(signal.SIGKILL)
    process.wait()
    wait_until(lambda: not any(alive(pid) for pid in workers), "the workers to die")
    # A server backend only notices its client is gone when it next talks to it: end the
    # sleeps, then nothing of either revision is left.
    fetch(database_url, f"SELECT pg_terminate_backend(pid) FROM ({sleeping}) s")
    wait_until(lambda: fetch(database_url, sleeping) == [], "the sleeping backends to end")
    assert fetch(database_url, "SELECT to_regclass('slow_a.t'), to_regclass('slow_b.t')") == [
        (None, None)]
    assert fetch(database_url, "SELECT count(*) FROM migrator.history WHERE outcome = "
                 "'applied'") == [(0,)]
