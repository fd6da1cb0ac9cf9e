"""On a real pseudo-terminal, the backfill progress display ends at the true total: the rows
there are to update, not the planner's estimate (stale after deletes)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
from helpers import fetch

DEADLINE = 120.0  # seconds the whole run may take on a loaded machine
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def run_on_a_terminal(args: list[str], env: dict[str, str], cwd: Path) -> tuple[int, str]:
    """Run the CLI with stdin, stdout and stderr on a new pseudo-terminal; returns its exit
    code and everything it drew, escape sequences removed."""
    leader, follower = os.openpty()
    process = subprocess.Popen([sys.executable, "-m", "migrator", *args], env=env, cwd=cwd,
                               stdin=follower, stdout=follower, stderr=follower,
                               start_new_session=True)
    os.close(follower)
    drawn = bytearray()
    deadline = time.monotonic() + DEADLINE
    try:
        while time.monotonic() < deadline:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: every holder of the terminal's other end has closed it
                break
            if not chunk:
                break
            drawn += chunk
        code = process.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(leader)
    return code, ANSI.sub("", drawn.decode("utf-8", "replace")).replace("\r", "\n")


def test_the_progress_display_on_a_terminal_reaches_the_true_total(
    database_url: str, tree: Callable[[str], Path], run_cli: Callable[..., Any],
    cli_env: dict[str, str], tmp_path: Path,
) -> None:
    env = {**cli_env, "MIGRATOR_DATABASE_URL": database_url,
           "MIGRATOR_MIGRATIONS_DIR": str(tree("bf_items")), "TEST_BF_BATCH": "500",
           "TEST_BF_TARGET": "0", "TERM": "xterm-256color", "COLUMNS": "160"}
    env.pop("MIGRATOR_LOG_FORMAT", None)  # auto: a terminal gets the console and the bar
    first = run_cli("upgrade", "--plugin", "bf", "--to", "bf_0001",
                    env={**env, "MIGRATOR_LOG_FORMAT": "json"})
    assert first.returncode == 0, first.stderr
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("INSERT INTO bf.items (id, payload) SELECT g, "
                     "jsonb_build_object('name', 'n' || g) FROM generate_series(1, 3000) g")
        conn.execute("ANALYZE bf.items")
        conn.execute("DELETE FROM bf.items WHERE id > 1000")  # the estimate still says 3000
    [(estimate,)] = fetch(database_url, "SELECT reltuples::bigint FROM pg_class "
                          "WHERE oid = 'bf.items'::regclass")
    assert estimate == 3000  # the premise: the planner is off by 2,000 rows

    code, screen = run_on_a_terminal(["upgrade"], env, tmp_path)

    assert code == 0, screen
    bars = [line for line in screen.splitlines() if "bf_" in line and "rows" in line]
    assert bars, screen
    assert re.search(r"\b1,?000/1,?000 rows\b", bars[-1]), bars[-1]
    assert not any("/3,000" in line or "/3000" in line for line in bars), bars
    assert "rows/s" in bars[-1]
    assert "2 revisions applied to 1 plugin" in screen  # the summary sentence follows
