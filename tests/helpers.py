"""Helpers shared by the test modules (fixtures live in conftest.py)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from migrator import discovery
from migrator.config import DatabaseUrl, Settings
from migrator.plan import oldest_first

REPO_ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_PLATFORM = REPO_ROOT / "plugin_migrations"
DEADLINE = 60.0  # seconds any awaited state may take on a loaded machine


def settings_for(database_url: str, migrations_dir: Path, **overrides: Any) -> Settings:
    """Settings for an in-process run against `database_url`, with patient timeouts."""
    return Settings(database_url=DatabaseUrl.parse(database_url, source="test"),
                    migrations_dir=migrations_dir, connect_timeout=10, lock_wait=30,
                    **overrides)


def chain(plugin: str) -> tuple[str, ...]:
    """The example platform's revisions of `plugin`, oldest first (the trees grow; the tests
    follow them)."""
    [found] = [p for p in discovery.discover(EXAMPLE_PLATFORM, entry_points=False)
               if p.name == plugin]
    return oldest_first(found, {r.revision for r in found.revisions})


def wait_until(condition: Callable[[], bool], what: str,
               process: subprocess.Popen[str] | None = None) -> None:
    """Poll `condition` until it holds; fail if `process` exits first or DEADLINE passes."""
    deadline = time.monotonic() + DEADLINE
    while not condition():
        if process is not None and process.poll() is not None:
            _, stderr = process.communicate()
            pytest.fail(f"migrator exited {process.returncode} before {what}:\n{stderr}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def fetch(url: str, query: str | sql.Composable, params: Any = None) -> list[Any]:
    """Run one statement on `url` in autocommit; its rows (none for a statement without any)."""
    with psycopg.connect(url, autocommit=True) as conn:
        cursor = conn.execute(query, params)
        return cursor.fetchall() if cursor.description else []


def rows(url: str, query: str | sql.Composable, *params: Any) -> list[Any]:
    """`fetch` with the parameters given positionally."""
    return fetch(url, query, params)


def version_of(url: str, schema: str) -> list[str]:
    """The revisions in `schema`'s version table."""
    query = sql.SQL("SELECT version_num FROM {}").format(sql.Identifier(schema, "alembic_version"))
    return [row[0] for row in fetch(url, query)]


def error_lines(stderr: str) -> list[str]:
    """The `migrator: error:` lines of a run's stderr."""
    return [line for line in stderr.splitlines() if line.startswith("migrator: error:")]
