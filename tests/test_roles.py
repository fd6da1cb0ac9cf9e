"""`--isolate-roles`: each plugin's schema owned by `<schema>_owner`, its revisions and backfills
run under that role, and one plugin's migration cannot reach another plugin's tables.

The `roles_platform` tree: `iso_core` (accounts, then a backfill), `iso_panels` (depends on
iso_core: a foreign key into it and a read of it, then a revision running the statement in
ROLES_TEST_STATEMENT_ISO_PANELS) and `iso_intruder` (depends on nothing; runs the statement in
ROLES_TEST_STATEMENT_ISO_INTRUDER). Roles are cluster-wide, so they outlive each test's database
and other tests (and other test sessions) meet them already made: every test here must pass
whether or not the roles exist when it starts.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from conftest import parse_json_lines, with_database
from helpers import error_lines, fetch
from psycopg import sql

RunCli = Callable[..., subprocess.CompletedProcess[str]]
Tree = Callable[[str], Path]
SCHEMAS = ("iso_core", "iso_intruder", "iso_panels")


@pytest.fixture
def platform(tree: Tree, database_url: str, cli_env: dict[str, str]
             ) -> Callable[..., subprocess.CompletedProcess[str]]:
    """`platform(*args, **env)` runs migrator on the roles_platform tree and this database."""
    migrations = tree("roles_platform")

    def run(*args: str, run_cli: RunCli | None = None, **env: str
            ) -> subprocess.CompletedProcess[str]:
        assert run_cli is not None
        return run_cli("--database-url", database_url, "--migrations-dir", migrations, *args,
                       env={**cli_env, **env})

    return run


def owners(url: str) -> list[tuple[str, str, str]]:
    """(schema, object, owner) for each plugin schema and everything in it migrator moves."""
    return [tuple(row) for row in fetch(url, """
        SELECT n.nspname, '(schema)', pg_get_userbyid(n.nspowner) FROM pg_namespace n
         WHERE n.nspname = ANY(%(s)s)
        UNION ALL SELECT n.nspname, c.relname, pg_get_userbyid(c.relowner) FROM pg_class c
          JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = ANY(%(s)s) AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'i')
        UNION ALL SELECT n.nspname, t.typname, pg_get_userbyid(t.typowner) FROM pg_type t
          JOIN pg_namespace n ON n.oid = t.typnamespace
         WHERE n.nspname = ANY(%(s)s) AND t.typtype IN ('e', 'd', 'r')
        UNION ALL SELECT n.nspname, p.proname, pg_get_userbyid(p.proowner) FROM pg_proc p
          JOIN pg_namespace n ON n.oid = p.pronamespace
         WHERE n.nspname = ANY(%(s)s) AND p.prokind = 'f'
        ORDER BY 1, 2""", {"s": list(SCHEMAS)})]


def core_objects(url: str) -> list[tuple[str, str, str]]:
    return [row for row in owners(url) if row[0] == "iso_core"]


def grants(url: str) -> list[Any]:
    """Every privilege and policy a run could add: ACLs of the plugin schemas and their
    relations, default privileges, migrator's tables and their policies."""
    return fetch(url, """
        SELECT 'schema', n.nspname, n.nspacl::text FROM pg_namespace n
         WHERE n.nspname = ANY(%(s)s) OR n.nspname = 'migrator'
        UNION ALL SELECT 'relation', n.nspname || '.' || c.relname, c.relacl::text FROM pg_class c
          JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = ANY(%(s)s) OR n.nspname = 'migrator'
        UNION ALL SELECT 'default', pg_get_userbyid(d.defaclrole) || ' '
               || d.defaclnamespace::regnamespace::text, d.defaclacl::text FROM pg_default_acl d
        UNION ALL SELECT 'policy', p.policyname, p.qual || ' / ' || p.with_check FROM pg_policies p
         WHERE p.schemaname = 'migrator'
        ORDER BY 1, 2""", {"s": list(SCHEMAS)})


def privilege(url: str, function: str, *args: str) -> bool:
    query = sql.SQL("SELECT {}({})").format(sql.Identifier(function),
                                            sql.SQL(", ").join(map(sql.Literal, args)))
    return bool(fetch(url, query)[0][0])


def test_each_plugin_owns_its_schema_and_runs_under_its_role(
    platform: Any, run_cli: RunCli, database_url: str,
) -> None:
    """Schemas and everything in them belong to NOLOGIN `<schema>_owner` roles, revisions and
    backfills run as that role, and a dependent plugin gets USAGE and SELECT + REFERENCES on
    its dependency, nothing more."""
    result = platform("upgrade", "--isolate-roles", run_cli=run_cli)
    assert result.returncode == 0, result.stderr

    assert {(schema, owner) for schema, _obj, owner in owners(database_url)} == {
        (schema, f"{schema}_owner") for schema in SCHEMAS}
    for schema in SCHEMAS:
        assert fetch(database_url, "SELECT rolcanlogin, rolsuper, rolcreaterole, rolcreatedb "
                     "FROM pg_roles WHERE rolname = %s", (f"{schema}_owner",)) == [
            (False, False, False, False)]
    assert fetch(database_url, "SELECT role_name FROM iso_core.ran_as") == [("iso_core_owner",)]
    # The backfill ran as the role and checkpointed through row-level security.
    assert fetch(database_url, "SELECT count(*) FROM iso_core.accounts "
                 "WHERE email <> lower(email)") == [(0,)]
    assert fetch(database_url, "SELECT plugin, status, rows_done FROM "
                 "migrator.backfill_progress") == [("iso_core", "done", 40)]
    # History rows are written as the login role, in each revision's transaction.
    assert fetch(database_url, "SELECT plugin, revision FROM migrator.history "
                 "WHERE outcome = 'applied' ORDER BY plugin, id") == [
        ("iso_core", "iso_core_0001"), ("iso_core", "iso_core_0002"),
        ("iso_intruder", "iso_intruder_0001"),
        ("iso_panels", "iso_panels_0001"), ("iso_panels", "iso_panels_0002")]
    assert fetch(database_url, "SELECT count(*) FROM iso_panels.panels") == [(3,)]

    panels, core, intruder = "iso_panels_owner", "iso_core_owner", "iso_intruder_owner"
    table = "iso_core.accounts"
    assert privilege(database_url, "has_schema_privilege", panels, "iso_core", "USAGE")
    assert not privilege(database_url, "has_schema_privilege", panels, "iso_core", "CREATE")
    for allowed in ("SELECT", "REFERENCES"):
        assert privilege(database_url, "has_table_privilege", panels, table, allowed)
    for denied in ("INSERT", "UPDATE", "DELETE", "TRUNCATE", "TRIGGER"):
        assert not privilege(database_url, "has_table_privilege", panels, table, denied)
    # Dependencies are one way, and a plugin without any gets nothing of the others.
    assert not privilege(database_url, "has_schema_privilege", core, "iso_panels", "USAGE")
    for schema in ("iso_core", "iso_panels"):
        assert not privilege(database_url, "has_schema_privilege", intruder, schema, "USAGE")
    # No plugin role may read or write migrator's history.
    for role in (panels, core, intruder):
        for kind in ("SELECT", "INSERT", "UPDATE", "DELETE"):
            assert not privilege(database_url, "has_table_privilege", role, "migrator.history",
                                 kind)


# (plugin, statement, what the database says): a dependent plugin may read and reference its
# dependency, not change it; a plugin without the dependency may not even see it. (UPDATE,
# DELETE and TRUNCATE are denied like INSERT: the privilege checks of the first test.)
ATTACKS = [
    ("iso_panels", "INSERT INTO iso_core.accounts VALUES (99, 'x')",
     "permission denied for table accounts"),
    ("iso_panels", "DROP TABLE iso_core.accounts CASCADE", "must be owner of table accounts"),
    ("iso_panels", "ALTER TABLE iso_core.accounts ADD COLUMN x integer",
     "must be owner of table accounts"),
    ("iso_panels", "CREATE TABLE iso_core.sneaky (id integer)",
     "permission denied for schema iso_core"),
    ("iso_panels", "INSERT INTO migrator.backfill_progress (plugin, revision, name, status) "
     "VALUES ('iso_core', 'x', 'y', 'done')", "row-level security"),
    ("iso_intruder", "SELECT count(*) FROM iso_core.accounts",
     "permission denied for schema iso_core"),
    ("iso_intruder", "DELETE FROM migrator.history", "permission denied for table history"),
    # PostgreSQL 15: "must have admin option on role", 16+: "permission denied to grant role"
    ("iso_intruder", "GRANT iso_core_owner TO iso_intruder_owner", "role \"iso_core_owner\""),
]


@pytest.mark.parametrize("attacker", ["iso_panels", "iso_intruder"])
def test_a_plugin_cannot_change_another_plugins_tables(
    attacker: str, platform: Any, run_cli: RunCli, database_url: str,
) -> None:
    """Each attempt on another plugin's tables (or on migrator's records) fails its revision
    with the database's "permission denied" in one line, exit 1, and changes nothing."""
    first = platform("upgrade", "--isolate-roles", "--plugin", "iso_core", run_cli=run_cli)
    assert first.returncode == 0, first.stderr
    before = fetch(database_url, "SELECT id, email FROM iso_core.accounts ORDER BY id")
    objects = core_objects(database_url)
    revision = {"iso_panels": "iso_panels_0002", "iso_intruder": "iso_intruder_0001"}[attacker]

    attacks = [(statement, said) for plugin, statement, said in ATTACKS if plugin == attacker]
    for statement, said in attacks:
        result = platform("upgrade", "--isolate-roles", "--plugin", attacker, run_cli=run_cli,
                          **{f"ROLES_TEST_STATEMENT_{attacker.upper()}": statement})
        assert result.returncode == 1, f"{statement}: {result.stderr}"
        assert "Traceback" not in result.stderr
        [line] = error_lines(result.stderr)
        assert f"plugin {attacker!r} revision {revision}" in line, line
        assert said in line, line
        assert "rolled back" in line, line

        assert fetch(database_url, "SELECT id, email FROM iso_core.accounts ORDER BY id") == \
            before, statement
        assert core_objects(database_url) == objects, statement
        assert fetch(database_url, "SELECT count(*) FROM migrator.history WHERE outcome = "
                     "'applied' AND plugin = 'iso_core'") == [(2,)], statement

    failed = fetch(database_url, "SELECT revision FROM migrator.history WHERE plugin = %s AND "
                   "outcome = 'failed'", (attacker,))
    assert failed == [(revision,)] * len(attacks)
    applied = fetch(database_url, "SELECT revision FROM migrator.history WHERE plugin = %s AND "
                    "outcome = 'applied' ORDER BY id", (attacker,))
    assert applied == ([("iso_panels_0001",)] if attacker == "iso_panels" else [])


def test_turning_it_on_for_an_existing_database_moves_ownership_and_is_idempotent(
    platform: Any, run_cli: RunCli, database_url: str, tree: Tree,
) -> None:
    """A database migrated without the option, with a view, sequence, types and a function
    added by hand: the first run with it hands everything to the roles even with nothing
    pending; later runs change nothing and take no lock; the plugin's next revision can
    alter its old tables."""
    plain = platform("upgrade", run_cli=run_cli)
    assert plain.returncode == 0, plain.stderr
    with psycopg.connect(database_url, autocommit=True) as conn:
        for statement in (
            "CREATE VIEW iso_core.account_emails AS SELECT email FROM iso_core.accounts",
            "CREATE SEQUENCE iso_core.tickets",
            "CREATE TYPE iso_core.tier AS ENUM ('free', 'paid')",
            "CREATE DOMAIN iso_core.positive AS integer CHECK (VALUE > 0)",
            "CREATE FUNCTION iso_core.account_count() RETURNS bigint LANGUAGE sql "
            "AS 'SELECT count(*) FROM iso_core.accounts'",
        ):
            conn.execute(statement)
        login = conn.execute("SELECT current_user").fetchone()
    assert login is not None
    assert {owner for _s, _o, owner in owners(database_url)} == {login[0]}

    adopted = platform("upgrade", "--isolate-roles", run_cli=run_cli)
    assert adopted.returncode == 0, adopted.stderr
    moved = owners(database_url)
    assert {(schema, owner) for schema, _obj, owner in moved} == {
        (schema, f"{schema}_owner") for schema in SCHEMAS}
    assert {obj for schema, obj, _owner in moved if schema == "iso_core"} >= {
        "(schema)", "accounts", "account_emails", "tickets", "tier", "positive",
        "account_count", "ran_as", "alembic_version"}
    events = parse_json_lines(adopted.stderr)
    assert sorted(e["plugin"] for e in events if e["event"] == "roles.isolated") == list(SCHEMAS)
    assert privilege(database_url, "has_table_privilege", "iso_panels_owner",
                     "iso_core.accounts", "REFERENCES")

    snapshot = (owners(database_url), grants(database_url))
    again = platform("upgrade", "--isolate-roles", run_cli=run_cli)
    assert again.returncode == 0, again.stderr
    assert [e["event"] for e in parse_json_lines(again.stderr)
            if e["event"].startswith(("lock.", "roles."))] == []
    assert (owners(database_url), grants(database_url)) == snapshot

    # The plugin's role now owns the tables made before the option: it can alter them.
    migrations = _tree_of(adopted)
    (migrations / "iso_core" / "versions" / "0003_add_nickname.py").write_text(
        '"""add nickname"""\nfrom alembic import op\n\nrevision = "iso_core_0003"\n'
        'down_revision = "iso_core_0002"\n\n\ndef upgrade() -> None:\n'
        '    op.execute("ALTER TABLE accounts ADD COLUMN nickname text")\n'
        '    op.execute("ALTER TABLE account_emails RENAME TO account_addresses")\n\n\n'
        'def downgrade() -> None:\n    pass\n')
    grown = platform("upgrade", "--isolate-roles", run_cli=run_cli)
    assert grown.returncode == 0, grown.stderr
    assert fetch(database_url, "SELECT version_num FROM iso_core.alembic_version") == [
        ("iso_core_0003",)]
    # Rerunning the whole setup on a plugin with work left changes no grant either.
    assert grants(database_url) == sorted(
        (kind, name.replace("account_emails", "account_addresses"), acl)
        for kind, name, acl in snapshot[1])


def _tree_of(result: subprocess.CompletedProcess[str]) -> Path:
    args = [str(a) for a in result.args]
    return Path(args[args.index("--migrations-dir") + 1])


def test_roles_made_for_another_database_are_reused(
    platform: Any, run_cli: RunCli, server_url: str, cli_env: dict[str, str],
) -> None:
    """The same plugins in two databases of one server share their roles (roles are
    cluster-wide): both upgrade, each database's grants stay its own."""
    first = platform("upgrade", "--isolate-roles", run_cli=run_cli)
    assert first.returncode == 0, first.stderr
    name = f"migrator_test_{uuid.uuid4().hex[:16]}"
    fetch(server_url, sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    other = with_database(server_url, name)
    try:
        second = run_cli("--database-url", other, "--migrations-dir", _tree_of(first),
                         "upgrade", "--isolate-roles", env=cli_env)
        assert second.returncode == 0, second.stderr
        assert {(s, o) for s, _obj, o in owners(other)} == {
            (schema, f"{schema}_owner") for schema in SCHEMAS}
        assert privilege(other, "has_table_privilege", "iso_panels_owner",
                         "iso_core.accounts", "SELECT")
    finally:
        fetch(server_url, sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
            sql.Identifier(name)))


# -- the login role -----------------------------------------------------------------------


def as_user(url: str, user: str) -> str:
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}@{host}"))


@pytest.fixture
def fresh_names(server_url: str) -> Iterator[dict[str, str]]:
    """A database and role names of this test alone; all dropped afterwards (database first:
    the roles own objects in it)."""
    tag = uuid.uuid4().hex[:10]
    names = {"database": f"migrator_test_{tag}", "schema": f"lg_{tag}",
             "login": f"lg_login_{tag}", "plain": f"lg_plain_{tag}"}
    fetch(server_url, sql.SQL("CREATE DATABASE {}").format(sql.Identifier(names["database"])))
    yield names
    fetch(server_url, sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
        sql.Identifier(names["database"])))
    for role in (f"{names['schema']}_owner", names["login"], names["plain"]):
        fetch(server_url, sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def test_a_login_role_with_createrole_and_create_on_the_database_is_enough(
    fresh_names: dict[str, str], server_url: str, tree: Tree, run_cli: RunCli,
    cli_env: dict[str, str],
) -> None:
    """Not a superuser: CREATEROLE and CREATE on the database suffice (as the README says);
    without CREATEROLE the run exits 1 saying what the login role needs."""
    database, schema = fresh_names["database"], fresh_names["schema"]
    for role, options in ((fresh_names["login"], "LOGIN CREATEROLE"),
                          (fresh_names["plain"], "LOGIN")):
        fetch(server_url, sql.SQL("CREATE ROLE {} " + options).format(sql.Identifier(role)))
        fetch(server_url, sql.SQL("GRANT CREATE ON DATABASE {} TO {}").format(
            sql.Identifier(database), sql.Identifier(role)))
    migrations = tree("roles_platform")
    for plugin in ("iso_panels", "iso_intruder"):  # iso_core alone, in a schema of its own
        for path in sorted((migrations / plugin).rglob("*"), reverse=True):
            path.rmdir() if path.is_dir() else path.unlink()
        (migrations / plugin).rmdir()
    (migrations / "iso_core" / "plugin.toml").write_text(f'schema = "{schema}"\n')
    url = with_database(server_url, database)

    refused = run_cli("--database-url", as_user(url, fresh_names["plain"]), "--migrations-dir",
                      migrations, "upgrade", "--isolate-roles", env=cli_env)
    assert refused.returncode == 1, refused.stderr
    [line] = error_lines(refused.stderr)
    assert f"could not set up role '{schema}_owner'" in line
    assert "the login role needs CREATEROLE" in line
    # The plugin's setup rolled back; the migrator schema that role made goes too.
    assert fetch(url, "SELECT nspname FROM pg_namespace WHERE nspname = %s", (schema,)) == []
    fetch(url, "DROP SCHEMA migrator CASCADE")

    done = run_cli("--database-url", as_user(url, fresh_names["login"]), "--migrations-dir",
                   migrations, "upgrade", "--isolate-roles", env=cli_env)
    assert done.returncode == 0, done.stderr
    assert fetch(url, sql.SQL("SELECT role_name FROM {}").format(
        sql.Identifier(schema, "ran_as"))) == [(f"{schema}_owner",)]
    assert fetch(url, "SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = %s",
                 (schema,)) == [(f"{schema}_owner",)]
    rerun = run_cli("--database-url", as_user(url, fresh_names["login"]), "--migrations-dir",
                    migrations, "upgrade", "--isolate-roles", env=cli_env)
    assert rerun.returncode == 0, rerun.stderr
