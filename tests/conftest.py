"""Fixtures for a suite that runs against real PostgreSQL, never a mock.

The server is ``MIGRATOR_TEST_DATABASE_URL`` when set, otherwise an embedded PostgreSQL started
once per test session (once per pytest-xdist worker, each in its own directory). Every test that
asks for ``database_url`` gets a fresh database on it, dropped afterwards.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
from psycopg import sql

from migrator.embedded import ensure_server, stop_server

REPO_ROOT = Path(__file__).resolve().parent.parent
TREES = Path(__file__).resolve().parent / "trees"

RunCli = Callable[..., subprocess.CompletedProcess[str]]
StartCli = Callable[..., subprocess.Popen[str]]


def parse_json_lines(text: str) -> list[dict[str, Any]]:
    """The JSON objects among the lines of ``text`` (a log on stderr), skipping other lines."""
    events = []
    for line in text.splitlines():
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            events.append(value)
    return events


def with_database(url: str, name: str) -> str:
    """``url`` pointing at database ``name`` instead, everything else kept."""
    parts = urlsplit(url)
    query = f"?{parts.query}" if parts.query else ""
    return f"{parts.scheme}://{parts.netloc}/{name}{query}"


def _base_cli_env() -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("MIGRATOR_")}
    env["MIGRATOR_LOG_FORMAT"] = "json"
    # The checkout's migrator, whether or not it is installed into this interpreter.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return env


@pytest.fixture(scope="session")
def server_url() -> Iterator[str]:
    """URL of the server under test: MIGRATOR_TEST_DATABASE_URL, else a session's embedded one."""
    if url := os.environ.get("MIGRATOR_TEST_DATABASE_URL"):
        yield url
        return
    workdir = Path(tempfile.mkdtemp(prefix="migrator-test-pg-"))
    pgdata = workdir / "pgdata"
    try:
        yield ensure_server(pgdata)
    finally:
        stop_server(pgdata)
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def migrator_server_url(server_url: str) -> str:
    """migrator.testing's server is this suite's: one embedded server per worker, not two."""
    return server_url


@pytest.fixture(scope="session")
def pg_major(server_url: str) -> int:
    """Major version of the server under test (15, 18, ...)."""
    with psycopg.connect(server_url) as conn:
        return conn.info.server_version // 10000


@contextmanager
def scratch_database(server_url: str) -> Iterator[str]:
    """URL of an empty database created on entry and dropped on exit."""
    name = f"migrator_test_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    yield with_database(server_url, name)
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture
def database_url(server_url: str) -> Iterator[str]:
    """URL of an empty database created for this test alone and dropped after it."""
    with scratch_database(server_url) as url:
        yield url


@pytest.fixture
def tree(tmp_path: Path) -> Callable[[str], Path]:
    """``tree("name")`` copies ``tests/trees/name/`` into tmp_path and returns the copy."""

    def copy(scenario: str) -> Path:
        target = tmp_path / "trees" / scenario
        ignore = shutil.ignore_patterns("__pycache__")
        return Path(shutil.copytree(TREES / scenario, target, ignore=ignore))

    return copy


@pytest.fixture
def cli_env() -> dict[str, str]:
    """The CLI's default environment, to extend: os.environ without MIGRATOR_*, plus JSON logs."""
    return _base_cli_env()


@pytest.fixture
def run_cli(tmp_path: Path) -> RunCli:
    """``run_cli(*args, env=None, cwd=tmp_path, timeout=120)`` runs ``python -m migrator``."""

    def run(
        *args: str | os.PathLike[str],
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "migrator", *map(str, args)],
            env=dict(_base_cli_env() if env is None else env),
            cwd=tmp_path if cwd is None else cwd,
            timeout=timeout,
            capture_output=True,
            text=True,
            check=False,
        )

    return run


@pytest.fixture
def start_cli(tmp_path: Path) -> Iterator[StartCli]:
    """``start_cli(*args, env=None, cwd=tmp_path)`` starts the CLI; killed at teardown if alive."""
    started: list[subprocess.Popen[str]] = []

    def start(
        *args: str | os.PathLike[str],
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [sys.executable, "-m", "migrator", *map(str, args)],
            env=dict(_base_cli_env() if env is None else env),
            cwd=tmp_path if cwd is None else cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
        process.communicate()


@pytest.fixture
def json_logs() -> Callable[[str], list[dict[str, Any]]]:
    """``json_logs(result.stderr)`` gives the JSON log events as dicts, skipping other lines."""
    return parse_json_lines


@pytest.fixture
def platform(tmp_path: Path) -> Path:
    """A copy of the example platform's trees (core, panels, analysis_results)."""
    from helpers import EXAMPLE_PLATFORM

    return Path(shutil.copytree(EXAMPLE_PLATFORM, tmp_path / "platform",
                                ignore=shutil.ignore_patterns("__pycache__")))
