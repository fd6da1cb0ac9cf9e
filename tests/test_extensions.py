"""Extensions: declared in plugin.toml, created in `public` before the plugin's revisions and
shared by every plugin; one a revision creates in its own schema is refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from helpers import error_lines, fetch, version_of
from treebuilder import Rev, write_plugin


def test_a_declared_extension_is_shared_by_two_plugins(
    database_url: str, run_cli: Any, cli_env: dict[str, str], tmp_path: Path,
) -> None:
    root = tmp_path / "plugins"
    for name in ("users", "emails"):
        # A revision may still say CREATE EXTENSION IF NOT EXISTS: it finds it in public.
        write_plugin(root, name, [Rev(f"{name}1", None,
                                      'op.execute("CREATE EXTENSION IF NOT EXISTS citext")\n'
                                      'op.execute("CREATE TABLE t (email citext)")')],
                     toml='extensions = ["citext"]')
    result = run_cli("upgrade", env={**cli_env, "MIGRATOR_DATABASE_URL": database_url,
                                     "MIGRATOR_MIGRATIONS_DIR": str(root)})
    assert result.returncode == 0, result.stderr
    assert fetch(database_url, "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON "
                 "n.oid = e.extnamespace WHERE e.extname = 'citext'") == [("public",)]
    for schema in ("users", "emails"):
        assert fetch(database_url, f"SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
                     f"WHERE attrelid = '{schema}.t'::regclass AND attname = 'email'"
                     ) == [("citext",)]


def test_an_undeclared_extension_created_by_a_revision_is_refused(
    database_url: str, run_cli: Any, cli_env: dict[str, str], tmp_path: Path,
) -> None:
    root = tmp_path / "plugins"
    write_plugin(root, "sneaky", [Rev("s1", None,
                                      'op.execute("CREATE EXTENSION IF NOT EXISTS hstore")')])
    result = run_cli("upgrade", env={**cli_env, "MIGRATOR_DATABASE_URL": database_url,
                                     "MIGRATOR_MIGRATIONS_DIR": str(root)})
    assert result.returncode == 1, result.stderr
    [line] = error_lines(result.stderr)
    assert "hstore" in line and 'extensions = ["hstore"]' in line, line
    assert fetch(database_url, "SELECT count(*) FROM pg_extension WHERE extname = 'hstore'"
                 ) == [(0,)]
    assert version_of(database_url, "sneaky") == []
