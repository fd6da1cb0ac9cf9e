"""`migrator upgrade` with nothing to do answers on the lean path (migrator.fast): the same
`run.finished` event and termination message as the full command, without loading typer,
rich, structlog, alembic, SQLAlchemy, tenacity or the backfill machinery, nor, on an indexed
tree (its tree summary), the plugin.toml parser; anything else goes to the full command
line."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from treebuilder import Rev, write_plugin

from migrator.revision_index import RACY_NS

PROBE = """
import json, sys
sys.argv = ["migrator", "upgrade"]
from migrator.fast import _answered_nothing_to_do
answered = _answered_nothing_to_do()
print(json.dumps({"answered": answered, "loaded": sorted(
    m for m in ("typer", "rich", "structlog", "alembic", "sqlalchemy", "tenacity",
                "migrator.backfill_run", "migrator.records", "tomllib")
    if m in sys.modules)}))
"""


def env_for(cli_env: dict[str, str], database_url: str, root: Path, **extra: str
            ) -> dict[str, str]:
    return {**cli_env, "MIGRATOR_DATABASE_URL": database_url,
            "MIGRATOR_MIGRATIONS_DIR": str(root), **extra}


def probe(env: dict[str, str]) -> dict[str, Any]:
    result = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True,
                            text=True, check=True)
    return dict(json.loads(result.stdout.splitlines()[-1]))


def index(root: Path, run_cli: Any, env: dict[str, str]) -> None:
    """`migrator index` (as the image build runs it) once the tree is older than the racy
    window, so that its summary is trusted."""
    newest = max(max(p.stat().st_mtime_ns, p.stat().st_ctime_ns) for p in root.rglob("*"))
    while time.time_ns() < newest + RACY_NS + 50_000_000:
        time.sleep(0.05)
    assert run_cli("index", env=env).returncode == 0


def test_nothing_to_do_is_answered_lean_and_reported_like_the_full_command(
    database_url: str, run_cli: Any, cli_env: dict[str, str], tmp_path: Path,
) -> None:
    root = tmp_path / "plugins"
    write_plugin(root, "lean", [Rev("l1", None), Rev("l2", "l1")])  # with a plugin.toml
    termination = tmp_path / "termination-log"
    env = env_for(cli_env, database_url, root, MIGRATOR_TERMINATION_LOG=str(termination))
    index(root, run_cli, env)

    assert probe(env) == {"answered": False, "loaded": []}  # pending: the full command's
    full = run_cli("upgrade", env=env)
    assert full.returncode == 0, full.stderr

    assert probe(env) == {"answered": True, "loaded": []}
    lean = run_cli("upgrade", env=env)
    assert lean.returncode == 0, lean.stderr
    [event] = [json.loads(line) for line in lean.stderr.splitlines()]
    assert (event["event"], event["level"], event["outcome"]) == ("run.finished", "info",
                                                                  "success")
    assert event["plugins"] == [{"plugin": "lean", "from": "l2", "to": "l2", "applied": 0,
                                 "duration_ms": 0, "outcome": "up_to_date"}]
    assert json.loads(termination.read_text())["outcome"] == "success"


def test_flags_isolate_roles_and_console_output_take_the_full_command(
    database_url: str, cli_env: dict[str, str], tmp_path: Path, run_cli: Any,
) -> None:
    root = tmp_path / "plugins"
    write_plugin(root, "lean", [Rev("l1", None)])
    env = env_for(cli_env, database_url, root)
    assert run_cli("upgrade", env=env).returncode == 0
    assert probe({**env, "MIGRATOR_ISOLATE_ROLES": "1"})["answered"] is False
    assert probe({**env, "MIGRATOR_LOG_FORMAT": "console"})["answered"] is False
    assert probe({**env, "MIGRATOR_DATABASE_URL": "postgresql://app@127.0.0.1:1/db",
                  "MIGRATOR_CONNECT_TIMEOUT": "0"})["answered"] is False


def test_the_version_read_started_early_is_used_only_for_the_trees_discovery_finds(
    database_url: str, run_cli: Any, cli_env: dict[str, str], tmp_path: Path,
) -> None:
    """The lean path reads the version tables the index's summary names while discovery
    checks the trees; when the trees changed since (here: the plugin moved to another schema,
    where nothing is applied yet), that read must not answer for them."""
    root = tmp_path / "plugins"
    write_plugin(root, "moving", [Rev("m1", None)], toml='schema = "moving_one"')
    env = env_for(cli_env, database_url, root)
    assert run_cli("upgrade", env=env).returncode == 0
    index(root, run_cli, env)
    assert probe(env)["answered"] is True  # the summary's guess is right: at head

    (root / "moving" / "plugin.toml").write_text('schema = "moving_two"\n')
    assert probe(env)["answered"] is False  # moving_two has nothing applied: pending
    assert run_cli("upgrade", env=env).returncode == 0
    assert probe(env)["answered"] is True
