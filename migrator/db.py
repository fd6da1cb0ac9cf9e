"""The database side of a run: the work session, migrator's session settings, and the fast
read of every plugin's current revision.

A `WorkSession` is one PostgreSQL session. It holds the advisory lock of the plugin being
migrated and runs that plugin's revisions, stamps and backfill batches itself, so losing the
session loses the lock with it: nothing can run a plugin's work without provably holding its
lock (the fence of DESIGN.md "How a run goes" 4). `session_settings` is the one place that
composes `search_path`; every revision, retry and backfill batch starts from it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql

from migrator.config import DatabaseUrl, Settings
from migrator.errors import (
    ConfigError,
    ConnectionLost,
    DatabaseError,
    PoolerDetected,
    TargetRefused,
)
from migrator.logs import first_line, get_logger

if TYPE_CHECKING:
    from typing import Protocol

    class Versioned(Protocol):
        """Anything with a schema (and perhaps a `version_table`): a plugin, an orphan."""

        @property
        def schema(self) -> str: ...

EMBEDDED_PGDATA_PARTS = (".migrator", "pgdata")
VERSION_TABLE = "alembic_version"
NO_DATABASE_HELP = (
    "no database configured; pass --database-url postgresql://USER@HOST/DB, set "
    "MIGRATOR_DATABASE_URL or MIGRATOR_DATABASE_URL_FILE, or use --embedded for a local server"
)
READ_ONLY_SQLSTATE = "25006"


def resolve_url(settings: Settings) -> DatabaseUrl:
    """The configured database, or the embedded server's when `--embedded` is given."""
    if settings.database_url is not None:
        return settings.database_url
    if settings.embedded:
        from pathlib import Path

        from migrator import embedded

        try:
            return DatabaseUrl.parse(embedded.ensure_server(Path(*EMBEDDED_PGDATA_PARTS).resolve()),
                                     source="embedded server")
        except RuntimeError as exc:
            raise ConfigError(str(exc)) from None
    raise ConfigError(NO_DATABASE_HELP)


def search_path(schema: str) -> sql.Composed:
    """`SET search_path TO "<schema>", "public"` (just `"public"` for a plugin living there):
    the one composition of a plugin's search_path, at run time and for plugin authors."""
    path = [sql.Identifier(schema)] + ([sql.Identifier("public")] if schema != "public" else [])
    return sql.SQL("SET search_path TO {}").format(sql.SQL(", ").join(path))


def plugin_setup(plugin: Versioned) -> list[sql.Composed]:
    """What migrator creates for a plugin before its revisions (`--sql` renders the same): its
    schema, its version table (Alembic's DDL, created beforehand so that each revision's
    transaction holds that revision's work alone) and its declared extensions, in `public`
    (shared by every plugin, and always on `search_path`)."""
    table = getattr(plugin, "version_table", VERSION_TABLE)
    return [
        sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(plugin.schema)),
        sql.SQL("CREATE TABLE IF NOT EXISTS {} (version_num VARCHAR(32) NOT NULL, "
                "CONSTRAINT {} PRIMARY KEY (version_num))").format(
                    sql.Identifier(plugin.schema, table), sql.Identifier(f"{table}_pkc")),
        *(sql.SQL("CREATE EXTENSION IF NOT EXISTS {} SCHEMA public").format(
            sql.Identifier(name)) for name in getattr(plugin, "extensions", ())),
    ]


def _migrator_settings(lock_timeout: float) -> list[tuple[str, str, sql.Composable]]:
    """What migrator sets after `RESET ALL` (role and search_path aside): each setting's name,
    its value, and the value as a `SET` statement writes it."""
    timeout = f"{max(1, round(lock_timeout * 1000))}ms"
    return [
        ("lock_timeout", timeout, sql.Literal(timeout)),
        # migrator's sessions are immune to the server's idle timeouts (a revision may spend
        # minutes in Python between statements; a waiter idles between polls).
        ("idle_session_timeout", "0", sql.SQL("0")),
        ("idle_in_transaction_session_timeout", "0", sql.SQL("0")),
        # Commits need not wait for their WAL flush; each plugin's last one does (steps.py).
        ("synchronous_commit", "off", sql.SQL("off")),
    ]


# RESET ALL leaves these two alone (PostgreSQL marks them GUC_NO_RESET_ALL).
_RESETS = [sql.SQL("RESET ALL"), sql.SQL("SET SESSION AUTHORIZATION DEFAULT")]


def session_settings(schema: str, *, lock_timeout: float) -> list[sql.SQL | sql.Composed]:
    """migrator's own session state, from a clean slate: what a revision, a retry or a backfill
    batch starts from. Whatever a revision `SET` (search_path, lock_timeout, statement_timeout,
    the role, anything) is undone here; what migrator does not set is the database's default.
    Runs outside a transaction (a SET inside one that rolls back would be undone too)."""
    return [
        *_RESETS,
        sql.SQL("RESET ROLE"),
        search_path(schema),
        *(sql.SQL("SET {} = {}").format(sql.SQL(name), written)
          for name, _, written in _migrator_settings(lock_timeout)),
    ]


def session_settings_script(schema: str, *, lock_timeout: float,
                            returning: sql.Composable) -> sql.Composed:
    """`session_settings` as one script for each revision's start, sent as one simple query
    (no parameters, no pipeline: the cheapest way to send several statements in psycopg): the
    resets, then one `SELECT set_config(...), ...` whose last column is `returning`."""
    # quote_ident quotes as SET does, so current_setting('search_path') reads the same.
    path = sql.SQL(" || ', ' || ").join(
        sql.SQL("pg_catalog.quote_ident({})").format(sql.Literal(part))
        for part in [schema] + (["public"] if schema != "public" else []))
    values: list[tuple[str, sql.Composable]] = [
        ("role", sql.Literal("none")), ("search_path", path),
        *((name, sql.Literal(value)) for name, value, _ in _migrator_settings(lock_timeout))]
    calls = sql.SQL(", ").join(
        sql.SQL("pg_catalog.set_config({}, {}, false)").format(sql.Literal(name), value)
        for name, value in values)
    return sql.SQL("; ").join([*_RESETS, sql.SQL("SELECT {}, {}").format(calls, returning)])


def version_table(plugin: Versioned) -> sql.Identifier:
    return sql.Identifier(plugin.schema, getattr(plugin, "version_table", VERSION_TABLE))


class WorkSession:
    """One session doing a run's work: locks, setup, revisions, stamps, backfill batches.

    The psycopg connection is kept with `autocommit` off, as SQLAlchemy and Alembic expect;
    migrator's own statements between transactions run in `autocommit()` blocks, so a waiter
    or an idle session never holds a transaction open.
    """

    def __init__(self, conn: psycopg.Connection[Any], *, lock_timeout: float) -> None:
        self.conn = conn
        self.lock_timeout = lock_timeout
        self.locked: str | None = None  # the plugin whose lock this session holds
        self.sa: Any = None  # the SQLAlchemy connection over `conn`, once steps made one
        self.backend_pid = conn.info.backend_pid

    @contextmanager
    def autocommit(self) -> Iterator[psycopg.Connection[Any]]:
        """The connection in autocommit mode (it must be idle: outside any transaction)."""
        before = self.conn.autocommit  # True inside a revision's autocommit_block
        self.conn.autocommit = True
        try:
            yield self.conn
        finally:
            if (not before and not self.conn.closed
                    and self.conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE):
                self.conn.autocommit = False

    def reset(self, schema: str) -> None:
        """Back to migrator's own settings for a plugin's schema, outside any transaction: before
        a plugin's lock and set-up, before a failed attempt's history row, before each backfill
        batch. Nothing a revision `SET` carries over (a sandboxed session's authorization is its
        own role: it has no other)."""
        with guarded(), self.autocommit() as conn:
            conn.execute(sql.SQL("; ").join(
                session_settings(schema, lock_timeout=self.lock_timeout)))

    def check_fence(self) -> None:
        """Refuse to go on when this session does not hold its plugin's lock where the server
        sees it: a transaction pooler (PgBouncer in transaction mode) hands consecutive
        transactions to different server sessions, so a session lock would guard nothing."""
        from migrator import locking

        assert self.locked is not None
        with self.autocommit() as conn:
            row = conn.execute(
                "SELECT pg_backend_pid(), EXISTS (SELECT FROM pg_catalog.pg_locks WHERE "
                "locktype = 'advisory' AND pid = pg_backend_pid() AND granted AND objsubid = 1 "
                "AND classid::bigint = %s AND objid::bigint = %s)",
                locking.key_parts(locking.plugin_key(self.locked))).fetchone()
        if row is None or row[0] != self.backend_pid or not row[1]:
            raise PoolerDetected(
                "the connection's transactions reach different PostgreSQL sessions (a "
                "transaction pooler such as PgBouncer in transaction mode?): migrator's session "
                "locks would not hold; connect to PostgreSQL directly, or through a pooler in "
                "session mode")

    def close(self) -> None:
        with suppress(psycopg.Error):  # closing a broken connection
            self.conn.close()


@contextmanager
def guarded() -> Iterator[None]:
    """psycopg errors of migrator's own statements, as migrator's errors."""
    try:
        yield
    except Exception as exc:
        # psycopg's own errors, and SQLAlchemy's wrapping of them (`.orig`).
        original = exc if isinstance(exc, psycopg.Error) else getattr(exc, "orig", None)
        if isinstance(original, psycopg.Error):
            raise database_error(original) from exc
        raise


def database_error(exc: BaseException) -> DatabaseError | ConnectionLost | TargetRefused:
    """A refused statement of migrator's own, as a one-line error (exit 1); a connection that
    went away (server restart, failover, pg_terminate_backend) is ConnectionLost (exit 4); a
    read-only target is TargetRefused (exit 2)."""
    from migrator import retries

    if retries.connection_lost(exc):
        return ConnectionLost(
            f"lost the database connection ({first_line(exc)}); whatever was in flight was "
            "rolled back, every plugin is at a revision boundary: rerun once the database is "
            "reachable")
    if retries.sqlstate(exc) == READ_ONLY_SQLSTATE:
        return TargetRefused(f"the database is read-only ({first_line(exc)}); migrate it "
                             "through a read-write connection to the primary")
    return DatabaseError(f"the database refused a statement of migrator's: {first_line(exc)}; "
                         "check the login role's privileges and the plugin schemas, then rerun")


# -- reading the current revisions ---------------------------------------------------------


def read_current_revisions(
    conn: psycopg.Connection[Any], plugins: Iterable[Versioned]
) -> dict[str, tuple[str, ...]]:
    """Each plugin's revisions (by schema) from its version table; plugins whose version
    table does not exist are left out.

    Catalog-guided: only ordinary tables without row-level security are read (`FROM ONLY`),
    so a view or a policy a plugin put in place of its version table never runs code as the
    role reading it. Two round trips: the catalog's list of readable version tables, then
    UNION ALLs over them, at most UNION_ARMS tables each (planning one statement of a thousand
    arms costs far more than ten of a hundred), sent together in one pipeline.
    """
    return read_version_tables(conn, version_tables_of(plugins))


def version_tables_of(plugins: Iterable[Versioned]) -> list[tuple[str, str]]:
    """The (schema, version table) pairs of `plugins`, sorted."""
    return sorted({(p.schema, getattr(p, "version_table", VERSION_TABLE)) for p in plugins})


def read_version_tables(conn: psycopg.Connection[Any], wanted: list[tuple[str, str]]
                        ) -> dict[str, tuple[str, ...]]:
    """`read_current_revisions` for these (schema, version table) pairs."""
    if not wanted:
        return {}
    tables = readable_version_tables(conn, wanted)
    if not tables:
        return {}
    queries = [sql.SQL(" UNION ALL ").join(
        sql.SQL("SELECT {}::text, version_num::text FROM ONLY {}").format(
            sql.Literal(schema), sql.Identifier(schema, table))
        for schema, table in tables[start:start + UNION_ARMS])
        for start in range(0, len(tables), UNION_ARMS)]
    found: dict[str, list[str]] = {schema: [] for schema, _ in tables}
    if len(queries) == 1:
        rows = conn.execute(queries[0]).fetchall()
    else:
        with conn.pipeline():
            cursors = [conn.cursor().execute(query) for query in queries]
        rows = [row for cursor in cursors for row in cursor.fetchall()]
    for schema, version in rows:
        found[schema].append(version)
    return {schema: tuple(sorted(versions)) for schema, versions in found.items()}


UNION_ARMS = 100


def readable_version_tables(conn: psycopg.Connection[Any], wanted: list[tuple[str, str]]
                            ) -> list[tuple[str, str]]:
    """The (schema, table) pairs of `wanted` that are ordinary tables with a `version_num`
    column and no row-level security."""
    rows = conn.execute(
        # Each table looked up by (name, schema) through pg_class's index: a plain join
        # hashes on the name alone, and every plugin's version table has the same name.
        "SELECT n.nspname, c.relname FROM unnest(%s::text[], %s::text[]) AS w(s, t) "
        "JOIN pg_catalog.pg_namespace n ON n.nspname = w.s "
        "CROSS JOIN LATERAL (SELECT c.oid, c.relname, c.relkind, c.relrowsecurity "
        "FROM pg_catalog.pg_class c WHERE c.relname = w.t AND c.relnamespace = n.oid "
        "OFFSET 0) c "
        "WHERE c.relkind = 'r' AND NOT c.relrowsecurity AND EXISTS (SELECT FROM "
        "pg_catalog.pg_attribute a WHERE a.attrelid = c.oid AND a.attname = 'version_num' "
        "AND NOT a.attisdropped) ORDER BY 1",
        ([s for s, _ in wanted], [t for _, t in wanted])).fetchall()
    return [(schema, table) for schema, table in rows]


def schemas_with_version_table(conn: psycopg.Connection[Any],
                               schemas: Iterable[str] | None = None,
                               table: str = VERSION_TABLE) -> list[str]:
    """Schemas that hold a version table named `table` (all of them when `schemas` is None)."""
    chosen = None if schemas is None else list(schemas)
    rows = conn.execute(
        "SELECT n.nspname FROM pg_catalog.pg_class c "
        "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relname = %s AND c.relkind IN ('r', 'p') "
        "AND (%s::text[] IS NULL OR n.nspname = ANY(%s::text[])) ORDER BY 1",
        (table, chosen, chosen)).fetchall()
    return [row[0] for row in rows]


def drop_invalid_indexes(session: WorkSession, schema: str) -> list[str]:
    """Drop the INVALID indexes a cut-short concurrent build left in `schema` (not those being
    built right now), so the revision that builds them runs again and rebuilds them — also when
    it says IF NOT EXISTS. Runs under the plugin's lock, outside any transaction."""
    with session.autocommit() as conn:
        # Planned cheaply (it runs for every plugin with work to do): the schema resolved by
        # to_regnamespace, not joined; the progress view only consulted when there is one.
        rows = conn.execute(
            "SELECT c.relname FROM pg_catalog.pg_class c WHERE c.oid IN (SELECT i.indexrelid "
            "FROM pg_catalog.pg_index i WHERE NOT i.indisvalid) AND c.relnamespace = "
            "pg_catalog.to_regnamespace(pg_catalog.quote_ident(%s)) AND NOT EXISTS (SELECT "
            "FROM pg_catalog.pg_stat_progress_create_index p WHERE p.index_relid = c.oid)",
            (schema,)).fetchall()
        dropped = []
        for (relname,) in rows:
            conn.execute(sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(
                sql.Identifier(schema, relname)))
            dropped.append(f"{schema}.{relname}")
    if dropped:
        get_logger().warning("index.invalid_dropped", schema=schema, indexes=dropped,
                             detail="left by a concurrent build cut short; the revision that "
                                    "builds them runs again")
    return dropped
