"""Opening connections: the one place migrator connects to PostgreSQL."""

from __future__ import annotations

import math
import os
import re
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
# PostgreSQL before 14 has no idle_session_timeout (and refuses the session that sets it).
_PRE_14_OPTIONS = "-c idle_in_transaction_session_timeout=0"
_PRE_14_REFUSAL = 'unrecognized configuration parameter "idle_session_timeout"'


def session_options(url: DatabaseUrl, *, before_14: bool = False) -> str:
    """libpq `options` for migrator's sessions: the URL's own, then migrator's (the last
    `-c` of a setting wins, so the idle timeouts stay off)."""
    own = _PRE_14_OPTIONS if before_14 else SESSION_OPTIONS
    return f"{url.params['options']} {own}" if url.params.get("options") else own


def host_identity() -> str:
    """Who is running: the pod name in Kubernetes (HOSTNAME), else the host name."""
    return os.environ.get("HOSTNAME") or socket.gethostname()


def application_name() -> str:
    return f"migrator@{host_identity()}"[:63]


# The server's and libpq's words for what waiting cannot heal: refused at once with exit 2.
# (A connection failure carries no SQLSTATE in psycopg: libpq keeps only the message.)
_REFUSALS = ("password authentication failed", "authentication failed", "does not exist",
             "no pg_hba.conf entry", "not permitted to log in", "SSL required",
             "certificate", "peer authentication failed", "Ident authentication failed",
             "unrecognized configuration parameter", "invalid value for parameter")
# libpq refusing an option's value before it sends anything (`port=abc`, `sslmode=true`).
_BAD_OPTION = re.compile(r"\binvalid (integer value|port number|[a-z_]+ value)\b")


def is_refusal(exc: BaseException) -> bool:
    """True when waiting cannot heal this connection failure."""
    text = str(exc)
    return any(sign in text for sign in _REFUSALS) or bool(_BAD_OPTION.search(text))


def connect(url: DatabaseUrl, *, timeout: float, autocommit: bool = True,
            writable: bool = False) -> psycopg.Connection[Any]:
    """Connect, retrying with backoff while the server is unreachable, starting up or full,
    for about `timeout` seconds in all (then exit 4); a refusal that waiting cannot heal —
    failed authentication, unknown role or database, with `writable` a read-only or standby
    server — is TargetRefused (exit 2) at once."""
    deadline = time.monotonic() + timeout
    before_14 = False

    def attempt(_seconds_left: float) -> psycopg.Connection[Any]:
        nonlocal before_14
        left = deadline - time.monotonic()
        try:
            return psycopg.connect(url.conninfo, autocommit=autocommit,
                                   application_name=application_name(),
                                   options=session_options(url, before_14=before_14),
                                   # libpq's per-attempt limit, so the last attempt cannot
                                   # run far past the deadline (2 s is libpq's minimum).
                                   connect_timeout=max(2, min(math.ceil(left), 10)))
        except psycopg.OperationalError as exc:
            if _PRE_14_REFUSAL in str(exc) and not before_14:
                before_14 = True  # an old server: the next attempt (at once) without it
                return attempt(_seconds_left)
            if is_refusal(exc):
                raise _refused(url, exc) from None
            raise

    def on_retry(number: int, exc: BaseException, delay: float) -> None:
        get_logger().warning("db.connect_retry", attempt=number, retry_in_s=round(delay, 2),
                    error=first_line(exc), database=url.safe)

    started = time.monotonic()
    try:
        if timeout <= 0:
            conn = attempt(0)
        else:
            from migrator import retries  # tenacity: a single attempt does without it

            conn = retries.retry_connect(attempt, timeout=timeout, on_retry=on_retry)
    except psycopg.OperationalError as exc:
        raise _unreachable(url, exc, time.monotonic() - started) from None
    if writable:
        try:
            refusal = read_only_reason(conn)
        except psycopg.Error:
            conn.close()
            raise
        if refusal:
            conn.close()
            raise TargetRefused(f"database {url.target} {refusal}")
    return conn


def read_only_reason(conn: psycopg.Connection[Any]) -> str | None:
    """Why migrations cannot run on this server, or None: a standby, or read-only."""
    row = conn.execute("SELECT pg_catalog.pg_is_in_recovery(), "
                       "pg_catalog.current_setting('transaction_read_only')").fetchone()
    if not autocommit_idle(conn):
        conn.rollback()
    if row is not None and row[0]:
        return ("is a standby (in recovery): migrations can only run on the primary; point "
                "--database-url at it")
    if row is not None and row[1] == "on":
        return ("is read-only (default_transaction_read_only): migrate it through a read-write "
                "connection or role")
    return None


def autocommit_idle(conn: psycopg.Connection[Any]) -> bool:
    return conn.autocommit or conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE


def _refused(url: DatabaseUrl, exc: BaseException) -> TargetRefused:
    text = str(exc)
    if _BAD_OPTION.search(text) or "parameter" in text:
        advice = "fix that option in the database URL"
    else:
        advice = "check the user, password and database name (and pg_hba.conf)"
    return TargetRefused(f"database {url.target} refused the connection ({first_line(exc)}); "
                         f"waiting will not help: {advice}")


def connect_as(url: DatabaseUrl, *, user: str, password: str, timeout: float
               ) -> psycopg.Connection[Any]:
    """A session on the same server and database, authenticated as `user` (a plugin's
    sandbox role, `--isolate-roles`); autocommit off, like a work session."""
    from psycopg.conninfo import make_conninfo

    params: dict[str, Any] = {key: value for key, value in url.params.items()
                              if key not in ("user", "password", "passfile")}
    try:
        return psycopg.connect(make_conninfo("", **params, user=user, password=password),
                               application_name=application_name(),
                               options=session_options(url),
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
