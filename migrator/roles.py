"""`--isolate-roles`: each plugin's schema owned by its own role, and a sandboxed session.

The role is `<schema>_owner`. It owns the plugin's schema and everything in it, gets USAGE on
the schemas of the plugins it `depends_on` and SELECT + REFERENCES on their tables (enough for
foreign keys and reads), and no more. The plugin's revisions and backfills run in a session
*authenticated as that role* — not switched to it — so neither `SET ROLE`, `RESET ROLE` nor
`SET SESSION AUTHORIZATION` leads anywhere, and whatever the plugin plants (a trigger, a
deferred constraint, a view in place of its version table) runs as the plugin's role, never as
migrator's login role. To open that session migrator gives the role LOGIN and a one-time
password (its SCRAM verifier computed here; the password never leaves the process) under the
plugin's lock, connects, and takes both away again at once. The role records its history only
through `migrator.record_attempt` (SECURITY DEFINER, for its own plugin only: the mapping is
`migrator.plugin_roles`) and checkpoints only its own backfills (row-level security).

migrator creates the roles (the login role needs CREATEROLE) and never drops them. Every step is
idempotent, and turning the option on for an existing database moves ownership to the role.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import psycopg
from psycopg import errors, sql

from migrator.discovery import Plugin
from migrator.errors import MigrationFailed

# relkind → the ALTER statement that changes its owner (indexes and TOAST follow their table;
# sequences owned by a column follow their table too, and may not be changed on their own).
_ALTER_BY_RELKIND = {
    "r": "TABLE", "p": "TABLE", "v": "VIEW", "m": "MATERIALIZED VIEW", "f": "FOREIGN TABLE",
    "S": "SEQUENCE",
}


def owner_role(schema: str) -> str:
    return f"{schema}_owner"


def prepare(conn: psycopg.Connection[Any], plugin: Plugin, schemas: Mapping[str, str]) -> str:
    """Create the plugin's role, hand it the schema and everything in it, grant it read and
    reference rights on its dependencies; returns the role name. Runs in the caller's
    transaction, as the login role, holding `locking.SHARED_OBJECTS_KEY` (its grants on
    migrator's own objects would race a peer's)."""
    role = owner_role(plugin.schema)
    try:
        _ensure_role(conn, role)
        _ensure_member(conn, role)
        conn.execute(sql.SQL("ALTER SCHEMA {} OWNER TO {}").format(
            sql.Identifier(plugin.schema), sql.Identifier(role)))
        _move_objects(conn, plugin.schema, role)
        for dependency in plugin.depends_on:
            _grant_dependency(conn, schemas.get(dependency, dependency), role)
        _grant_backfill_progress(conn, plugin.name, role)
        _grant_records(conn, plugin, role)
    except errors.InsufficientPrivilege as exc:
        raise MigrationFailed(
            f"plugin {plugin.name!r}: --isolate-roles could not set up role {role!r} "
            f"({exc.diag.message_primary}); the login role needs CREATEROLE and must own the "
            "plugin schemas (or be superuser)", plugin=plugin.name, revision=None) from None
    return role


def _ensure_role(conn: psycopg.Connection[Any], role: str) -> None:
    exists = conn.execute("SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = %s", (role,))
    if exists.fetchone():
        return
    try:
        with conn.transaction():  # a savepoint: a concurrent creator may win the race
            conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(role)))
    except (errors.DuplicateObject, errors.UniqueViolation):
        pass


def _ensure_member(conn: psycopg.Connection[Any], role: str) -> None:
    """GRANT the role to the login role unless it may already SET ROLE to it (a superuser
    may). Roles are cluster-wide: granting again would write the shared catalog, where
    runners working on other databases of the server would race."""
    # PostgreSQL 16 split membership into ADMIN, INHERIT and SET options; 15 knows MEMBER only.
    privilege = "SET" if conn.info.server_version >= 160000 else "MEMBER"
    row = conn.execute("SELECT pg_catalog.pg_has_role(current_user, %s, %s)",
                       (role, privilege)).fetchone()
    if not (row and row[0]):
        conn.execute(sql.SQL("GRANT {} TO CURRENT_USER").format(sql.Identifier(role)))


def _move_objects(conn: psycopg.Connection[Any], schema: str, role: str) -> None:
    rows = conn.execute(
        "SELECT c.relname, c.relkind FROM pg_catalog.pg_class c "
        "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relkind = ANY(%s) "
        "AND c.relowner <> (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = %s) "
        "AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = "
        "'pg_catalog.pg_class'::regclass AND d.objid = c.oid AND d.deptype IN ('a', 'i')) "
        "ORDER BY c.relkind, c.relname",
        (schema, list(_ALTER_BY_RELKIND), role)).fetchall()
    for name, relkind in rows:
        conn.execute(sql.SQL("ALTER {} {} OWNER TO {}").format(
            sql.SQL(_ALTER_BY_RELKIND[relkind]), sql.Identifier(schema, name),
            sql.Identifier(role)))
    types = conn.execute(
        "SELECT t.typname FROM pg_catalog.pg_type t "
        "JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace "
        "WHERE n.nspname = %s AND t.typtype IN ('e', 'd', 'r') "
        "AND t.typowner <> (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = %s)",
        (schema, role)).fetchall()
    for (name,) in types:
        conn.execute(sql.SQL("ALTER TYPE {} OWNER TO {}").format(
            sql.Identifier(schema, name), sql.Identifier(role)))
    routines = conn.execute(
        "SELECT p.proname, pg_catalog.pg_get_function_identity_arguments(p.oid) "
        "FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace "
        "WHERE n.nspname = %s AND p.prokind IN ('f', 'p') "
        "AND p.proowner <> (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = %s) "
        "AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = "
        "'pg_catalog.pg_proc'::regclass AND d.objid = p.oid AND d.deptype IN ('i', 'e'))",
        (schema, role)).fetchall()
    for name, arguments in routines:
        # The argument list is PostgreSQL's own rendering (format_type quotes what it must).
        conn.execute(sql.SQL("ALTER ROUTINE {}({}) OWNER TO {}").format(
            sql.Identifier(schema, name), sql.SQL(arguments), sql.Identifier(role)))


def needing_setup(conn: psycopg.Connection[Any], schemas: Sequence[str]) -> list[str]:
    """Which of `schemas` are not (yet) owned, with everything `prepare` moves, by their
    role: one catalog query, so a run with nothing pending stays cheap under the option."""
    if not schemas:
        return []
    rows = conn.execute(
        "SELECT n.nspname FROM unnest(%(schemas)s::text[], %(roles)s::text[]) AS w(nspname, role) "
        "JOIN pg_catalog.pg_namespace n ON n.nspname = w.nspname WHERE "
        " n.nspowner IS DISTINCT FROM (SELECT r.oid FROM pg_catalog.pg_roles r "
        "  WHERE r.rolname = w.role)"
        " OR EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.relnamespace = n.oid "
        "  AND c.relkind = ANY(%(relkinds)s) AND c.relowner <> n.nspowner AND NOT EXISTS ("
        "  SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_catalog.pg_class'::regclass "
        "  AND d.objid = c.oid AND d.deptype IN ('a', 'i')))"
        " OR EXISTS (SELECT 1 FROM pg_catalog.pg_type t WHERE t.typnamespace = n.oid "
        "  AND t.typtype IN ('e', 'd', 'r') AND t.typowner <> n.nspowner)"
        " OR EXISTS (SELECT 1 FROM pg_catalog.pg_proc p WHERE p.pronamespace = n.oid "
        "  AND p.prokind IN ('f', 'p') AND p.proowner <> n.nspowner AND NOT EXISTS ("
        "  SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_catalog.pg_proc'::regclass "
        "  AND d.objid = p.oid AND d.deptype IN ('i', 'e'))) ORDER BY 1",
        {"schemas": list(schemas), "roles": [owner_role(s) for s in schemas],
         "relkinds": list(_ALTER_BY_RELKIND)}).fetchall()
    return [row[0] for row in rows]


def _grant_dependency(conn: psycopg.Connection[Any], schema: str, role: str) -> None:
    conn.execute(sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(
        sql.Identifier(schema), sql.Identifier(role)))
    conn.execute(sql.SQL("GRANT SELECT, REFERENCES ON ALL TABLES IN SCHEMA {} TO {}").format(
        sql.Identifier(schema), sql.Identifier(role)))
    dependency_owner = owner_role(schema)
    exists = conn.execute("SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = %s",
                          (dependency_owner,)).fetchone()
    if exists:
        # Tables the dependency creates later are covered too.
        conn.execute(sql.SQL(
            "ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA {} GRANT SELECT, REFERENCES "
            "ON TABLES TO {}").format(sql.Identifier(dependency_owner), sql.Identifier(schema),
                                      sql.Identifier(role)))


def _grant_backfill_progress(conn: psycopg.Connection[Any], plugin: str, role: str) -> None:
    """A backfill checkpoints in the same statement as its batch, so it runs as the plugin's
    role; row-level security keeps that role to its own plugin's rows."""
    table = sql.Identifier("migrator", "backfill_progress")
    conn.execute(sql.SQL("GRANT USAGE ON SCHEMA migrator TO {}").format(sql.Identifier(role)))
    conn.execute(sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON {} TO {}").format(
        table, sql.Identifier(role)))
    conn.execute(sql.SQL("ALTER TABLE {} ENABLE ROW LEVEL SECURITY").format(table))
    exists = conn.execute(
        "SELECT 1 FROM pg_catalog.pg_policies WHERE schemaname = 'migrator' "
        "AND tablename = 'backfill_progress' AND policyname = %s", (role,)).fetchone()
    if not exists:
        conn.execute(sql.SQL(
            "CREATE POLICY {} ON {} TO {} USING (plugin = {}) WITH CHECK (plugin = {})").format(
                sql.Identifier(role), table, sql.Identifier(role), sql.Literal(plugin),
                sql.Literal(plugin)))


def _grant_records(conn: psycopg.Connection[Any], plugin: Plugin, role: str) -> None:
    """The role may record history through `migrator.record_attempt`, for its plugin only."""
    conn.execute(
        "INSERT INTO migrator.plugin_roles (plugin, schema_name, role_name) VALUES (%s, %s, %s) "
        "ON CONFLICT (plugin) DO UPDATE SET schema_name = EXCLUDED.schema_name, "
        "role_name = EXCLUDED.role_name", (plugin.name, plugin.schema, role))
    conn.execute(sql.SQL("GRANT EXECUTE ON FUNCTION {}(text, text, text, text, text, "
                         "timestamptz, timestamptz, text, text, text, text, boolean) TO {}").format(
        sql.Identifier("migrator", "record_attempt"), sql.Identifier(role)))


def open_login(conn: psycopg.Connection[Any], role: str) -> str:
    """Let `role` log in once: LOGIN and a fresh random password, whose SCRAM verifier is
    computed here so the password itself is never sent in a statement. Returns the password.
    Call under the plugin's lock, then `close_login` as soon as the session is open."""
    password = secrets.token_urlsafe(32)
    verifier = conn.pgconn.encrypt_password(password.encode(), role.encode(), b"scram-sha-256")
    _alter_role(conn, sql.SQL("ALTER ROLE {} LOGIN PASSWORD {}").format(
        sql.Identifier(role), sql.Literal(verifier.decode())))
    return password


def close_login(conn: psycopg.Connection[Any], role: str) -> None:
    """Take LOGIN and the password away again (the open session stays)."""
    _alter_role(conn, sql.SQL("ALTER ROLE {} NOLOGIN PASSWORD NULL").format(
        sql.Identifier(role)))


def _alter_role(conn: psycopg.Connection[Any], statement: sql.Composed) -> None:
    retry_catalog_races(lambda: conn.execute(statement))


def retry_catalog_races(action: Callable[[], object], attempts: int = 10) -> None:
    """Run `action` again when PostgreSQL refused it with "tuple concurrently updated": two
    sessions wrote the same catalog row at once (roles are cluster-wide, so a runner on
    another database of the server may alter the same role; grants and policies on shared
    objects race too). `action` must be safe to repeat: a statement, or a transaction."""
    for attempt in range(attempts):
        try:
            action()
            return
        except errors.InternalError as exc:
            if "concurrently updated" not in str(exc) or attempt == attempts - 1:
                raise
            time.sleep(0.01 * (attempt + 1))
