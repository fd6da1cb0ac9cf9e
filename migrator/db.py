"""Connections: where the database is, connecting with retries, and the fast revision read."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql

from migrator.config import DatabaseUrl, Settings
from migrator.errors import ConfigError, ConnectionLost, DatabaseError, DatabaseUnreachable
from migrator.logs import get_logger, redact

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

EMBEDDED_PGDATA = Path(".migrator") / "pgdata"
VERSION_TABLE = "alembic_version"
NO_DATABASE_HELP = (
    "no database configured; pass --database-url postgresql://USER@HOST/DB, set "
    "MIGRATOR_DATABASE_URL or MIGRATOR_DATABASE_URL_FILE, or use --embedded for a local server"
)


def resolve_url(settings: Settings) -> DatabaseUrl:
    """The configured database, or the embedded server's when `--embedded` is given."""
    if settings.database_url is not None:
        return settings.database_url
    if settings.embedded:
        from migrator import embedded

        try:
            return DatabaseUrl.parse(embedded.ensure_server(EMBEDDED_PGDATA.resolve()),
                                     source="embedded server")
        except RuntimeError as exc:
            raise ConfigError(str(exc)) from None
    raise ConfigError(NO_DATABASE_HELP)


def host_identity() -> str:
    """Who is running: the pod name in Kubernetes (HOSTNAME), else the host name."""
    return os.environ.get("HOSTNAME") or socket.gethostname()


def application_name() -> str:
    return f"migrator@{host_identity()}"[:63]


def connect(
    url: DatabaseUrl, *, timeout: float, autocommit: bool = True
) -> psycopg.Connection[Any]:
    """Connect, retrying with backoff while the server is unreachable, for `timeout` seconds."""

    def attempt(seconds_left: float) -> psycopg.Connection[Any]:
        return psycopg.connect(url.conninfo, autocommit=autocommit,
                               application_name=application_name(),
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
                    error=_first_line(exc), database=url.safe)

    started = time.monotonic()
    try:
        connection: psycopg.Connection[Any] = retries.retry_connect(
            attempt, timeout=timeout, on_retry=on_retry)
    except psycopg.OperationalError as exc:
        raise _unreachable(url, exc, time.monotonic() - started) from None
    return connection


def _unreachable(url: DatabaseUrl, exc: BaseException, waited: float) -> DatabaseUnreachable:
    return DatabaseUnreachable(
        f"database {url.safe} unreachable after {waited:.0f}s: {_first_line(exc)}; check the "
        "host, credentials and network, or raise --connect-timeout")


def database_error(exc: BaseException) -> DatabaseError | ConnectionLost:
    """A refused statement of migrator's own, as a one-line error (exit 1); a connection that
    went away (server restart, failover, pg_terminate_backend) is ConnectionLost (exit 4)."""
    from migrator import retries

    if retries.connection_lost(exc):
        return ConnectionLost(
            f"lost the database connection ({_first_line(exc)}); whatever was in flight was "
            "rolled back, every plugin is at a revision boundary: rerun once the database is "
            "reachable")
    return DatabaseError(f"the database refused a statement of migrator's: {_first_line(exc)}; "
                         "check the login role's privileges and the plugin schemas, then rerun")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return redact(text[0] if text else type(exc).__name__)


def read_current_revisions(
    conn: psycopg.Connection[Any], schemas: Iterable[str]
) -> dict[str, tuple[str, ...]]:
    """Each schema's revisions from its version table; absent schemas are left out.

    The common case (every version table exists) is answered by one UNION ALL query; only
    when a table is missing does a catalog query narrow the read to the tables that exist.
    """
    wanted = sorted(set(schemas))
    if not wanted:
        return {}
    try:
        return _read_versions(conn, wanted)
    except psycopg.errors.UndefinedTable:
        if not conn.autocommit:
            conn.rollback()
    existing = schemas_with_version_table(conn, wanted)
    return _read_versions(conn, existing) if existing else {}


def _read_versions(conn: psycopg.Connection[Any], schemas: list[str]) -> dict[str, tuple[str, ...]]:
    query = sql.SQL(" UNION ALL ").join(
        sql.SQL("SELECT {}::text, version_num::text FROM {}").format(
            sql.Literal(schema), sql.Identifier(schema, VERSION_TABLE))
        for schema in schemas)
    found: dict[str, list[str]] = {}
    for schema, version in conn.execute(query).fetchall():
        found.setdefault(schema, []).append(version)
    return {schema: tuple(sorted(found.get(schema, []))) for schema in schemas}


def schemas_with_version_table(
    conn: psycopg.Connection[Any], schemas: Iterable[str] | None = None
) -> list[str]:
    """Schemas that hold an `alembic_version` table (all of them when `schemas` is None)."""
    rows = conn.execute(
        "SELECT n.nspname FROM pg_catalog.pg_class c "
        "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relname = %s AND c.relkind IN ('r', 'p') "
        "AND (%s::text[] IS NULL OR n.nspname = ANY(%s::text[])) ORDER BY 1",
        (VERSION_TABLE, None if schemas is None else list(schemas),
         None if schemas is None else list(schemas)),
    ).fetchall()
    return [row[0] for row in rows]


def sqlalchemy_engine(url: DatabaseUrl, *, timeout: float) -> Engine:
    """A SQLAlchemy engine (psycopg 3) whose connections come from `connect` with retries."""
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    def creator() -> Any:
        return connect(url, timeout=timeout, autocommit=False)

    # NullPool closes each connection it gets back, which ends whatever transaction was open;
    # the ROLLBACK a pool sends first would only fail, with a logged traceback, on a
    # connection that was lost (terminated, server restarted).
    return create_engine("postgresql+psycopg://", creator=creator, poolclass=NullPool,
                         pool_reset_on_return=None)
