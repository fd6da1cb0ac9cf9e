"""Opening connections: the one place migrator connects to PostgreSQL."""

from __future__ import annotations

import os
import socket
import time
from typing import Any

import psycopg

from migrator.config import DatabaseUrl
from migrator.errors import DatabaseUnreachable, TargetRefused
from migrator.logs import first_line, get_logger

# migrator's sessions are immune to the server's idle timeouts: a revision may spend minutes
# in Python between statements, and a waiter idles between polls.
SESSION_OPTIONS = "-c idle_session_timeout=0 -c idle_in_transaction_session_timeout=0"


def host_identity() -> str:
    """Who is running: the pod name in Kubernetes (HOSTNAME), else the host name."""
    return os.environ.get("HOSTNAME") or socket.gethostname()


def application_name() -> str:
    return f"migrator@{host_identity()}"[:63]


def connect(url: DatabaseUrl, *, timeout: float, autocommit: bool = True,
            writable: bool = False) -> psycopg.Connection[Any]:
    """Connect, retrying with backoff while the server is unreachable, for `timeout` seconds."""
    del writable  # checked by the caller (db.require_writable)

    def attempt(seconds_left: float) -> psycopg.Connection[Any]:
        return psycopg.connect(url.conninfo, autocommit=autocommit,
                               application_name=application_name(), options=SESSION_OPTIONS,
                               connect_timeout=max(2, min(int(seconds_left), 10)))

    try:
        return attempt(timeout)
    except psycopg.OperationalError as first:
        if timeout <= 0:
            raise _unreachable(url, first, timeout) from None
    from migrator import retries

    log = get_logger()

    def on_retry(number: int, exc: BaseException, delay: float) -> None:
        log.warning("db.connect_retry", attempt=number, retry_in_s=round(delay, 2),
                    error=first_line(exc), database=url.safe)

    started = time.monotonic()
    try:
        connection: psycopg.Connection[Any] = retries.retry_connect(
            attempt, timeout=timeout, on_retry=on_retry)
    except psycopg.OperationalError as exc:
        raise _unreachable(url, exc, time.monotonic() - started) from None
    return connection


def connect_as(url: DatabaseUrl, *, user: str, password: str, timeout: float
               ) -> psycopg.Connection[Any]:
    """A session on the same server and database, authenticated as `user` (a plugin's
    sandbox role, `--isolate-roles`); autocommit off, like a work session."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    params: dict[str, Any] = {key: value for key, value in conninfo_to_dict(url.conninfo).items()
                              if key not in ("user", "password", "passfile")}
    try:
        return psycopg.connect(make_conninfo("", **params, user=user, password=password),
                               application_name=application_name(), options=SESSION_OPTIONS,
                               connect_timeout=max(2, min(int(timeout), 10)))
    except psycopg.OperationalError as exc:
        message = (f"could not open the sandboxed session as role {user!r} on {url.safe} "
                   f"({first_line(exc)})")
        if any(sign in str(exc) for sign in ("pg_hba.conf", "authentication failed",
                                             "not permitted to log in")):
            raise TargetRefused(
                f"{message}; pg_hba.conf must let the plugin roles log in with a password "
                "(scram-sha-256) from where migrator connects") from None
        raise DatabaseUnreachable(f"{message}; rerun once the database is reachable") from None


def _unreachable(url: DatabaseUrl, exc: BaseException, waited: float) -> DatabaseUnreachable:
    return DatabaseUnreachable(
        f"database {url.safe} unreachable after {waited:.0f}s: {first_line(exc)}; check the "
        "host, credentials and network, or raise --connect-timeout")
