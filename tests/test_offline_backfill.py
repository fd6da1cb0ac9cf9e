"""`upgrade --sql` renders a backfill as SQL that psql runs batch by batch over every row
before the revision's stamp; a Python transform stops psql instead of being stamped."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from helpers import fetch, version_of
from treebuilder import Rev, write_plugin

TABLE = ('op.create_table("events", sa.Column("id", sa.Integer, primary_key=True), '
         'sa.Column("n", sa.Integer), sa.Column("tag", sa.Text))\n'
         'op.execute("INSERT INTO events (id) SELECT g FROM generate_series(1, 40000) g")')


def psql(url: str, script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url, "-f", "-"],
                          input=script, capture_output=True, text=True, check=False)


def test_a_40000_row_backfill_applied_by_psql_updates_every_row_before_its_stamp(
    database_url: str, run_cli: Any, cli_env: dict[str, str], tmp_path: Path,
) -> None:
    root = tmp_path / "plugins"
    write_plugin(root, "bulk", [
        Rev("b1", None, TABLE),
        Rev("b2", "b1", 'backfill("events", set="n = id * :k, tag = \'50%\'", '
                        'where="n IS NULL", params={"k": 2}, batch_size=1000)')])
    env = {**cli_env, "MIGRATOR_MIGRATIONS_DIR": str(root)}
    script = run_cli("upgrade", "--sql", env=env)
    assert script.returncode == 0, script.stderr
    assert script.stdout.count("DO $migrator") >= 1  # the walk, one block
    assert "'50%'" in script.stdout and "'50%%'" not in script.stdout

    applied = psql(database_url, script.stdout)
    assert applied.returncode == 0, applied.stderr
    assert fetch(database_url, "SELECT count(*) FROM bulk.events WHERE n = id * 2 AND "
                 "tag = '50%'") == [(40000,)]
    assert version_of(database_url, "bulk") == ["b2"]

    again = run_cli("upgrade", env={**env, "MIGRATOR_DATABASE_URL": database_url})
    assert again.returncode == 0, again.stderr
    assert not [e for e in map(json.loads, again.stderr.splitlines())
                if e["event"] == "revision.applied"]


def test_a_python_transform_stops_psql_before_the_stamp(
    database_url: str, run_cli: Any, cli_env: dict[str, str], tmp_path: Path,
) -> None:
    root = tmp_path / "plugins"
    write_plugin(root, "py", [
        Rev("t1", None, TABLE),
        Rev("t2", "t1", 'backfill("events", transform=lambda rows: [{"n": 1} for r in rows], '
                        'columns=["n"])')])
    script = run_cli("upgrade", "--sql", env={**cli_env, "MIGRATOR_MIGRATIONS_DIR": str(root)})
    assert script.returncode == 0, script.stderr
    applied = psql(database_url, script.stdout)
    assert applied.returncode != 0
    assert "transform=" in applied.stderr and "migrator upgrade" in applied.stderr
    assert version_of(database_url, "py") == ["t1"]  # stamped up to before it, not past


def test_dry_run_shows_the_backfill_specification(
    database_url: str, run_cli: Any, cli_env: dict[str, str], tmp_path: Path,
) -> None:
    root = tmp_path / "plugins"
    write_plugin(root, "spec", [
        Rev("s1", None, TABLE),
        Rev("s2", "s1", 'backfill("events", set="n = id", batch_size=5000)')])
    env = {**cli_env, "MIGRATOR_MIGRATIONS_DIR": str(root), "MIGRATOR_DATABASE_URL": database_url}
    assert run_cli("upgrade", "--to", "s1", "--plugin", "spec", env=env).returncode == 0
    shown = run_cli("upgrade", "--dry-run", env=env)
    assert shown.returncode == 0, shown.stderr
    assert "events" in shown.stdout and "5000" in shown.stdout
