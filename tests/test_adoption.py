"""Adopting an existing Alembic app: a single-application tree living in `public` with
`public.alembic_version`, built by plain `alembic upgrade`, is picked up as it stands —
`status` shows its real revision, `upgrade` applies only what is pending, nothing is re-run,
and plain Alembic still reads the version table afterwards."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from helpers import fetch
from treebuilder import Rev, write_plugin

ENV_PY = '''
from alembic import context
from sqlalchemy import create_engine

connectable = create_engine(context.config.get_main_option("sqlalchemy.url"))
with connectable.connect() as connection:
    context.configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()
'''

REVISIONS = [
    Rev("a1", None, 'op.create_table("accounts", sa.Column("id", sa.Integer, primary_key=True))'),
    Rev("a2", "a1", 'op.add_column("accounts", sa.Column("email", sa.Text))'),
    Rev("a3", "a2", 'op.create_index("ix_accounts_email", "accounts", ["email"])'),
]


def alembic_config(tree: Path, url: str) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(tree))
    config.set_main_option("sqlalchemy.url", url.replace("postgresql://",
                                                         "postgresql+psycopg://"))
    return config


def test_an_app_built_by_plain_alembic_is_adopted_as_it_stands(
    database_url: str, run_cli: Any, cli_env: dict[str, str], tmp_path: Path,
) -> None:
    from alembic import command

    root = tmp_path / "plugins"
    tree = write_plugin(root, "app", REVISIONS, toml='schema = "public"')
    (tree / "env.py").write_text(ENV_PY)
    (tree / "script.py.mako").write_text("")
    command.upgrade(alembic_config(tree, database_url), "a2")  # the app's own deploy so far
    assert fetch(database_url, "SELECT version_num FROM public.alembic_version") == [("a2",)]

    env = {**cli_env, "MIGRATOR_DATABASE_URL": database_url, "MIGRATOR_MIGRATIONS_DIR": str(root)}
    status = run_cli("status", "--format", "json", env=env)
    assert status.returncode == 0, status.stderr
    [app] = json.loads(status.stdout)["plugins"]
    assert (app["schema"], app["current"], app["pending"], app["state"]) == (
        "public", "a2", ["a3"], "pending")

    result = run_cli("upgrade", env=env)
    assert result.returncode == 0, result.stderr
    applied = [json.loads(line) for line in result.stderr.splitlines()
               if "revision.applied" in line]
    assert [e["revision"] for e in applied] == ["a3"]  # nothing re-run
    assert fetch(database_url, "SELECT indexname FROM pg_indexes WHERE schemaname = 'public' "
                 "AND tablename = 'accounts' AND indexname = 'ix_accounts_email'") != []
    assert fetch(database_url, "SELECT version_num FROM public.alembic_version") == [("a3",)]

    # Plain Alembic still reads (and agrees with) the version table migrator now keeps.
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy import create_engine

    engine = create_engine(database_url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.connect() as conn:
        assert MigrationContext.configure(conn).get_current_heads() == ("a3",)
    engine.dispose()


def test_two_plugins_claiming_public_are_refused_naming_both(
    run_cli: Any, cli_env: dict[str, str], tmp_path: Path,
) -> None:
    root = tmp_path / "plugins"
    write_plugin(root, "one", [Rev("o1", None)], toml='schema = "public"')
    write_plugin(root, "two", [Rev("t1", None)], toml='schema = "public"')
    result = run_cli("plugins", env={**cli_env, "MIGRATOR_MIGRATIONS_DIR": str(root)})
    assert result.returncode == 2
    assert "'one'" in result.stderr and "'two'" in result.stderr and "public" in result.stderr
