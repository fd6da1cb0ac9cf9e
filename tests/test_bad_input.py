"""Bad input through the real command line: exit 2 (or 4), one readable line, nothing touched.

Each case runs `python -m migrator` in a subprocess against a fresh database and then reads the
catalog: a refused run must not have created the `migrator` schema or any plugin schema.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

Tree = Callable[[str], Path]
RunCli = Callable[..., subprocess.CompletedProcess[str]]
PASSWORD = "hunter2-Sekret"


def created_objects(database_url: str) -> list[str]:
    """Schemas other than the built-in ones, and relations in public, in the database."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT 'schema ' || nspname FROM pg_catalog.pg_namespace "
            "WHERE nspname NOT IN ('public', 'information_schema') AND nspname NOT LIKE 'pg\\_%' "
            "UNION ALL "
            "SELECT 'relation public.' || c.relname FROM pg_catalog.pg_class c "
            "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public'"
        ).fetchall()
    return sorted(row[0] for row in rows)


def refusal(result: subprocess.CompletedProcess[str], exit_code: int = 2) -> str:
    """The one-line error of a refused run, after checking the shape every refusal shares."""
    assert result.returncode == exit_code, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert lines, "nothing on stderr"
    assert lines[-1].startswith("migrator: error: "), lines[-1]
    assert [line for line in lines if line.startswith("migrator: error:")] == [lines[-1]]
    return lines[-1]


# scenario → what the error line must say: the file or plugin, and what to do
BAD_TREES: dict[str, list[str]] = {
    "bad_plugin_name": ["Core-Plugin", "must match ^[a-z][a-z0-9_]{0,47}$",
                        "rename the directory"],
    "bad_schema_public": ["plugins 'core' and 'host' both use schema 'public'",
                          "public is for one plugin only"],
    "bad_schema_migrator": ["core/plugin.toml", "schema 'migrator' is not allowed"],
    "bad_schema_information_schema": ["core/plugin.toml",
                                      "schema 'information_schema' is not allowed"],
    "bad_schema_pg_prefix": ["core/plugin.toml", "schema 'pg_panels' is not allowed"],
    "bad_schema_invalid": ["core/plugin.toml", "schema 'Panel Data' is not allowed"],
    "bad_schema_newline": ["core/plugin.toml", "is not allowed"],
    "bad_schema_shared": ["'alpha' and 'beta' both use schema 'shared'",
                          "set a different `schema` in one plugin.toml"],
    "bad_toml_unknown_key": ["core/plugin.toml", "unknown key 'schemas'", "allowed keys are"],
    "bad_toml_wrong_type": ["core/plugin.toml", "schema must be a string"],
    "bad_toml_depends_not_list": ["core/plugin.toml", "depends_on must be a list"],
    "bad_toml_invalid": ["core/plugin.toml", "invalid TOML", "fix the file"],
    "bad_two_heads": ["plugin 'core' has 2 heads (b2, c3)",
                      'migrator merge --plugin core -m "merge heads"'],
    "bad_unknown_down_revision": ["core/versions/0002_create_teams.py", "down_revision 'zz9'",
                                  "point it at an existing revision"],
    "bad_duplicate_revision": ["0002_create_teams.py", "0001_create_core_items.py",
                               "revision id 'a1' is also used by", "give one of them a new id"],
    "bad_syntax_error": ["core/versions/0002_create_teams.py:6: syntax error", "fix the file"],
    "bad_syntax_error_body": ["core/versions/0002_create_teams.py:11: syntax error",
                              "fix the file"],
    "bad_missing_revision": ["0002_create_teams.py", "no `revision = ...` assignment"],
    "bad_missing_down_revision": ["0002_create_teams.py", "no `down_revision = ...` assignment"],
    "bad_revision_id_quote": ["0002_create_teams.py", "must be 1-32 letters",
                              "fix the `revision = ...` line"],
    "bad_revision_id_long": ["0002_create_teams.py", "must be 1-32 letters"],
    "bad_down_revision_expression": ["0002_create_teams.py", "`down_revision` must be a literal"],
    "bad_revision_cycle": ["core", "cycle", "b2", "c3"],
    "bad_depends_unknown": ["plugin 'panels' depends on 'core', which is not installed",
                            "install it or remove it from depends_on"],
    "bad_dependency_cycle": ["dependency cycle between plugins:", "alpha", "beta", "gamma",
                             "remove one depends_on entry"],
    "bad_self_dependency": ["core/plugin.toml", "plugin 'core' depends on itself"],
    "disc_module_raises": ["core/versions/0001_create_accounts.py:9: importing the revision",
                           "RuntimeError: this revision module must not be imported",
                           "fix the file"],
}


@pytest.mark.parametrize("scenario", sorted(BAD_TREES))
def test_bad_tree_is_refused_before_touching_the_database(
    scenario: str, tree: Tree, run_cli: RunCli, database_url: str
) -> None:
    """Every kind of bad tree makes `upgrade` exit 2 with one `migrator: error:` line naming the
    file or plugin and the fix, no traceback, and nothing created in the database."""
    migrations = tree(scenario)
    result = run_cli("--database-url", database_url, "--migrations-dir", migrations, "upgrade")
    line = refusal(result)
    for fragment in BAD_TREES[scenario]:
        assert fragment in line
    assert created_objects(database_url) == []


def test_an_import_error_names_the_file_and_line_and_the_traceback_waits_for_debug(
    tree: Tree, run_cli: RunCli, database_url: str
) -> None:
    """A revision that fails to import is named by file and line, also when the migrations
    directory is given relatively; the traceback is shown only at --log-level debug."""
    migrations = tree("disc_module_raises")
    relative = ["--database-url", database_url, "--migrations-dir", migrations.name, "upgrade"]
    result = run_cli(*relative, cwd=migrations.parent)
    assert refusal(result).startswith(
        "migrator: error: disc_module_raises/core/versions/0001_create_accounts.py:9: "
        "importing the revision failed (RuntimeError: ")
    assert "Traceback" not in result.stderr
    debug = run_cli("--log-level", "debug", *relative, cwd=migrations.parent)
    assert debug.returncode == 2
    assert "Traceback (most recent call last)" in debug.stderr
    assert "revision.import_failed" in debug.stderr


def test_plugin_found_twice_is_refused_through_the_cli(
    tree: Tree, run_cli: RunCli, cli_env: dict[str, str], database_url: str
) -> None:
    """A plugin both in the migrations directory and installed as an entry point stops
    `upgrade` with exit 2, naming both places."""
    site = tree("disc_entry_point")
    info = site / "extplug_dist-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: extplug-dist\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[migrator.plugins]\nextplug = extplug_pkg\n")
    env = {**cli_env, "PYTHONPATH": os.pathsep.join([str(site), cli_env["PYTHONPATH"]])}
    migrations = tree("bad_found_twice")
    linear = tree("disc_linear")

    listed = run_cli("--migrations-dir", linear, "plugins", "--format", "json", env=env)
    assert listed.returncode == 0, listed.stderr
    assert [(p["name"], p["source"]) for p in json.loads(listed.stdout)["plugins"]] == [
        ("core", str(linear / "core")), ("extplug", "entry point extplug = extplug_pkg")]

    result = run_cli("--database-url", database_url, "--migrations-dir", migrations, "upgrade",
                     env=env)
    assert refusal(result) == (
        f"migrator: error: plugin 'extplug' is found twice: {migrations / 'extplug'} and entry "
        "point extplug = extplug_pkg; remove or rename one of them")
    assert created_objects(database_url) == []


# -- no database, wrong database ------------------------------------------------------------


@pytest.mark.parametrize("command", ["upgrade", "status"])
def test_no_database_configured_says_how_to_configure_one(
    command: str, tree: Tree, run_cli: RunCli
) -> None:
    """A command that needs a database, with none configured, exits 2 naming --database-url,
    the variables and --embedded, never silently picking a default."""
    line = refusal(run_cli("--migrations-dir", tree("disc_linear"), command))
    assert "no database configured" in line
    for way in ("--database-url", "MIGRATOR_DATABASE_URL", "MIGRATOR_DATABASE_URL_FILE",
                "--embedded"):
        assert way in line


@pytest.mark.parametrize(
    ("command", "expected"),
    [("plugins", [{"name": "core", "schema": "core", "depends_on": [], "head": "c3",
                   "heads": ["c3"], "extensions": [], "version_table": "alembic_version"}]),
     ("heads", [{"name": "core", "head": "c3", "heads": ["c3"]}])],
)
def test_commands_that_need_no_database_work_without_one(
    command: str, expected: list[dict[str, object]], tree: Tree, run_cli: RunCli
) -> None:
    """`plugins` and `heads` read only the trees, so they succeed with no database configured."""
    result = run_cli("--migrations-dir", tree("disc_linear"), command, "--format", "json")
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)["plugins"]
    assert [{k: v for k, v in row.items() if k != "source"} for row in rows] == expected


def test_unknown_plugin_is_a_usage_error(tree: Tree, run_cli: RunCli, database_url: str) -> None:
    """`upgrade --plugin` with a name no tree has exits 2 listing the discovered plugins."""
    result = run_cli("--database-url", database_url, "--migrations-dir", tree("disc_linear"),
                     "upgrade", "--plugin", "nope")
    assert refusal(result) == (
        "migrator: error: unknown plugin 'nope'; discovered plugins: core (see: migrator plugins)")
    assert created_objects(database_url) == []


@pytest.mark.parametrize("plugins", [[], ["alpha", "mid"]], ids=["no_plugin", "two_plugins"])
def test_to_needs_exactly_one_plugin(
    plugins: list[str], tree: Tree, run_cli: RunCli, database_url: str
) -> None:
    """`upgrade --to` without exactly one --plugin exits 2: a revision belongs to one tree."""
    selection = [arg for name in plugins for arg in ("--plugin", name)]
    result = run_cli("--database-url", database_url, "--migrations-dir",
                     tree("disc_dependencies"), "upgrade", *selection, "--to", "al1")
    assert refusal(result) == ("migrator: error: --to needs exactly one --plugin (a revision "
                               "belongs to one plugin's tree)")
    assert created_objects(database_url) == []


def test_to_unknown_revision_is_a_usage_error(
    tree: Tree, run_cli: RunCli, database_url: str
) -> None:
    """`upgrade --plugin core --to` a revision not in core's tree exits 2 listing known ones."""
    migrations = tree("disc_linear")
    result = run_cli("--database-url", database_url, "--migrations-dir", migrations,
                     "upgrade", "--plugin", "core", "--to", "zz9")
    assert refusal(result) == (
        f"migrator: error: revision 'zz9' is not in the tree of plugin 'core' "
        f"({migrations / 'core' / 'versions'}); known revisions: a1, b2, c3; run: migrator "
        "history --plugin core")
    assert created_objects(database_url) == []


@pytest.mark.parametrize(
    ("args", "env_extra", "expected"),
    [(["--connect-timeout", "5x", "upgrade"], {},
      "--connect-timeout / MIGRATOR_CONNECT_TIMEOUT: '5x' is not a duration"),
     (["upgrade", "--lock-timeout", "soon"], {},
      "--lock-timeout / MIGRATOR_LOCK_TIMEOUT: 'soon' is not a duration"),
     (["upgrade"], {"MIGRATOR_LOCK_WAIT": "forever"},
      "--lock-wait / MIGRATOR_LOCK_WAIT: 'forever' is not a duration")],
    ids=["connect_timeout_flag", "lock_timeout_flag", "lock_wait_variable"],
)
def test_bad_duration_is_a_usage_error(
    args: list[str], env_extra: dict[str, str], expected: str, tree: Tree, run_cli: RunCli,
    cli_env: dict[str, str], database_url: str,
) -> None:
    """A malformed duration in a flag or its variable exits 2 naming both and the valid forms."""
    result = run_cli("--database-url", database_url, "--migrations-dir", tree("disc_linear"),
                     *args, env={**cli_env, **env_extra})
    line = refusal(result)
    assert expected in line
    assert "write it like 250ms, 5s, 2m or a number of seconds" in line
    assert created_objects(database_url) == []


@pytest.mark.parametrize("via", ["flag", "variable"])
def test_unsupported_url_scheme_is_refused_without_echoing_the_password(
    via: str, tree: Tree, run_cli: RunCli, cli_env: dict[str, str]
) -> None:
    """A non-PostgreSQL URL exits 2 listing the accepted schemes; its password appears nowhere."""
    url = f"mysql://app:{PASSWORD}@db.example.com/platform"
    args: list[str] = ["--database-url", url] if via == "flag" else []
    env = cli_env if via == "flag" else {**cli_env, "MIGRATOR_DATABASE_URL": url}
    result = run_cli(*args, "--migrations-dir", tree("disc_linear"), "upgrade", env=env)
    line = refusal(result)
    assert "unsupported database URL scheme 'mysql'" in line
    assert "postgresql+asyncpg://" in line
    assert PASSWORD not in result.stderr + result.stdout


def test_malformed_url_is_refused_without_traceback(tree: Tree, run_cli: RunCli) -> None:
    """A URL that cannot be parsed (an unclosed IPv6 bracket) exits 2 with one error line, no
    traceback and no password."""
    url = f"postgresql://app:{PASSWORD}@[::1/platform"
    result = run_cli("--database-url", url, "--migrations-dir", tree("disc_linear"), "upgrade")
    line = refusal(result)
    assert "--database-url" in line
    assert PASSWORD not in result.stderr + result.stdout


@pytest.mark.parametrize(
    "url",
    [f"postgresql://app:{PASSWORD}@127.0.0.1:1/platform",
     f"postgresql://app@127.0.0.1:1/platform?password={PASSWORD}"],
    ids=["password_in_userinfo", "password_in_query"],
)
def test_unreachable_database_exits_4_quickly_without_the_password(
    url: str, tree: Tree, run_cli: RunCli
) -> None:
    """A closed port with --connect-timeout 1 exits 4 within seconds, the error saying what to
    check, and the password in no line of output."""
    started = time.monotonic()
    result = run_cli("--database-url", url, "--connect-timeout", "1",
                     "--migrations-dir", tree("disc_linear"), "upgrade", timeout=30)
    elapsed = time.monotonic() - started
    line = refusal(result, exit_code=4)
    assert elapsed < 10
    assert "127.0.0.1:1/platform" in line
    assert "unreachable" in line
    assert "raise --connect-timeout" in line
    assert PASSWORD not in result.stderr + result.stdout
