"""`--isolate-roles` is a sandbox, not a guard (DESIGN.md "Security and isolation").

A hostile plugin (`sbx_evil`, depending on nothing) tries each way out of its role that worked
when its revisions merely ran under `SET ROLE`: switching to a sibling's role, resetting to
migrator's login role, changing the session authorization, planting a view in place of its
version table that calls an invoker-rights function, and a deferred constraint trigger that
fires at commit. Each attempt must fail its revision (exit 1, one line) and leave the sibling
`sbx_core`'s rows as they were — also after migrator's login role has read everything it reads.
Roles are cluster-wide, so these tests pass whether or not the roles exist already.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from helpers import error_lines, fetch, version_of
from treebuilder import Rev, write_plugin

CORE = [Rev("core1", None, 'op.create_table("accounts", sa.Column("id", sa.Integer, '
                           'primary_key=True))\n'
                           'op.execute("INSERT INTO accounts VALUES (1)")')]
EVIL_BASE = Rev("evil1", None, 'op.create_table("loot", sa.Column("id", sa.Integer))')

STEAL = """CREATE FUNCTION steal() RETURNS text LANGUAGE plpgsql AS $f$
BEGIN
    INSERT INTO sbx_core.accounts VALUES (666);
    RETURN 'evil1';
END $f$"""

ATTACKS = {
    "SET ROLE to a sibling": (
        'op.execute("SET ROLE sbx_core_owner")\n'
        'op.execute("INSERT INTO sbx_core.accounts VALUES (2)")',
        "permission denied to set role"),
    "RESET ROLE": (
        'op.execute("RESET ROLE")\n'
        'op.execute("INSERT INTO sbx_core.accounts VALUES (3)")',
        "permission denied for schema sbx_core"),
    "SET SESSION AUTHORIZATION": (
        'op.execute("SET SESSION AUTHORIZATION DEFAULT")\n'
        'op.execute("SET SESSION AUTHORIZATION postgres")',
        "permission denied to set session authorization"),
    "a deferred constraint trigger": (
        f'op.execute("""{STEAL}""")\n'
        'op.execute("CREATE FUNCTION on_commit() RETURNS trigger LANGUAGE plpgsql AS '
        "$f$ BEGIN PERFORM steal(); RETURN NULL; END $f$\")\n"
        'op.execute("CREATE CONSTRAINT TRIGGER later AFTER INSERT ON loot DEFERRABLE '
        'INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION on_commit()")\n'
        'op.execute("INSERT INTO loot VALUES (1)")',
        "permission denied for schema sbx_core"),
    "a view in place of the version table": (
        "with op.get_context().autocommit_block():\n"
        f'    op.execute("""{STEAL}""")\n'
        '    op.execute("DROP TABLE alembic_version")\n'
        '    op.execute("CREATE VIEW alembic_version AS SELECT steal()::varchar(32) AS '
        'version_num")',
        "evil2"),
}


@pytest.fixture
def platform(database_url: str, run_cli: Any, cli_env: dict[str, str], tmp_path: Path
             ) -> Callable[..., Any]:
    root = tmp_path / "plugins"
    write_plugin(root, "sbx_core", CORE)
    env = {**cli_env, "MIGRATOR_DATABASE_URL": database_url, "MIGRATOR_MIGRATIONS_DIR": str(root)}

    # The sibling is in place, with its row, before the attacker arrives: the two do not
    # depend on each other, so a run of both may apply them in either order (--jobs).
    ready = run_cli("upgrade", "--isolate-roles", env=env)
    assert ready.returncode == 0, ready.stderr

    def run(*args: str, attack: str | None = None) -> Any:
        if attack is not None:
            write_plugin(root, "sbx_evil", [EVIL_BASE, Rev("evil2", "evil1", attack)])
        return run_cli(*args, env=env)

    return run


def core_rows(url: str) -> list[Any]:
    return fetch(url, "SELECT id FROM sbx_core.accounts ORDER BY id")


@pytest.mark.parametrize("name", list(ATTACKS))
def test_each_way_out_of_the_sandbox_is_refused_and_the_sibling_is_intact(
    name: str, platform: Callable[..., Any], database_url: str,
) -> None:
    body, said = ATTACKS[name]
    result = platform("upgrade", "--isolate-roles", attack=body)
    assert result.returncode == 1, result.stderr
    [line] = error_lines(result.stderr)
    assert "'sbx_evil' revision evil2" in line and said in line, line
    assert core_rows(database_url) == [(1,)]
    assert version_of(database_url, "sbx_core") == ["core1"]

    # migrator's login role reads what it reads, with the plant in place: no code of the
    # plugin's runs as the login role.
    for command in (("status",), ("check",), ("current",), ("upgrade", "--isolate-roles")):
        platform(*command)
        assert core_rows(database_url) == [(1,)], command


def test_revisions_run_in_a_session_authenticated_as_the_plugins_role(
    platform: Callable[..., Any], database_url: str,
) -> None:
    body = ('op.execute("CREATE TABLE who AS SELECT session_user::text AS s, '
            'current_user::text AS c")')
    result = platform("upgrade", "--isolate-roles", attack=body)
    assert result.returncode == 0, result.stderr
    assert fetch(database_url, "SELECT s, c FROM sbx_evil.who") == [
        ("sbx_evil_owner", "sbx_evil_owner")]
    # Its login was for that moment only.
    assert fetch(database_url, "SELECT rolcanlogin, rolpassword IS NULL FROM pg_authid "
                 "WHERE rolname = 'sbx_evil_owner'") == [(False, True)]
    assert fetch(database_url, "SELECT revision, outcome FROM migrator.history WHERE "
                 "plugin = 'sbx_evil' ORDER BY id") == [("evil1", "applied"),
                                                       ("evil2", "applied")]


def test_a_plugin_role_cannot_record_history_for_another_plugin(
    platform: Callable[..., Any], database_url: str,
) -> None:
    body = ('op.execute("SELECT migrator.record_attempt(\'sbx_core\', \'sbx_core\', \'x\', '
            "'up', NULL, now(), now(), 'me', '0', 'applied', NULL, true)\")")
    result = platform("upgrade", "--isolate-roles", attack=body)
    assert result.returncode == 1, result.stderr
    [line] = error_lines(result.stderr)
    assert "may not record history for plugin sbx_core" in line, line
    assert fetch(database_url, "SELECT count(*) FROM migrator.history WHERE revision = 'x'"
                 ) == [(0,)]
