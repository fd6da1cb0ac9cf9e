"""Output for people (`--log-format console`, as on a terminal): a header, one line per
revision with its message and time, a summary sentence; each error once; JSON unchanged."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from helpers import error_lines
from treebuilder import Rev, write_plugin


def two_plugins(root: Path, *, failing: bool = False) -> None:
    write_plugin(root, "core", [
        Rev("c1", None, 'op.create_table("a", sa.Column("id", sa.Integer))', message="create a"),
        Rev("c2", "c1", 'op.create_table("b", sa.Column("id", sa.Integer))', message="create b"),
    ])
    body = "raise RuntimeError('broken on purpose')" if failing else "pass"
    write_plugin(root, "panels", [Rev("p1", None, body, message="add panels")],
                 toml='depends_on = ["core"]')


def run(run_cli: Any, cli_env: dict[str, str], database_url: str, root: Path, *args: str,
        log_format: str = "console") -> Any:
    return run_cli("--log-format", log_format, *args,
                   env={**cli_env, "MIGRATOR_DATABASE_URL": database_url,
                        "MIGRATOR_MIGRATIONS_DIR": str(root)})


def test_an_upgrade_reads_like_a_migrate_command(
    database_url: str, run_cli: Any, cli_env: dict[str, str], tmp_path: Path,
) -> None:
    root = tmp_path / "plugins"
    two_plugins(root)
    result = run(run_cli, cli_env, database_url, root, "upgrade")
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert lines[0] == "Upgrade " + lines[0].split(" ", 1)[1]
    assert lines[0].endswith(": 2 plugins to do (core, panels)")
    assert "postgres@" in lines[0] and "***" not in lines[0]
    assert re.fullmatch(r"  Applying core c1 create a \.\.\. ok \(\d+ ms\)", lines[1]), lines[1]
    assert re.fullmatch(r"  Applying core c2 create b \.\.\. ok \(\d+ ms\)", lines[2]), lines[2]
    assert re.fullmatch(r"  Applying panels p1 add panels \.\.\. ok \(\d+ ms\)", lines[3])
    assert re.fullmatch(r"3 revisions applied to 2 plugins in \d+\.\d s\.", lines[4]), lines[4]
    assert len(lines) == 5
    text = result.stderr
    assert "{" not in text and "event=" not in text and "\u2500" not in text  # no dicts, boxes
    assert "\033[" not in text  # no colours off a terminal

    again = run(run_cli, cli_env, database_url, root, "upgrade")
    assert again.stderr.splitlines() == ["Nothing to do: 2 plugin(s) up to date."]
    verbose = run(run_cli, cli_env, database_url, root, "-v", "upgrade")
    assert verbose.stderr.splitlines() == [
        "  core already at head (c2)", "  panels already at head (p1)",
        "Nothing to do: 2 plugin(s) up to date."]


def test_a_failing_revision_shows_its_error_once(
    database_url: str, run_cli: Any, cli_env: dict[str, str], tmp_path: Path,
) -> None:
    root = tmp_path / "plugins"
    two_plugins(root, failing=True)
    result = run(run_cli, cli_env, database_url, root, "upgrade")
    assert result.returncode == 1
    assert result.stderr.count("broken on purpose") == 1
    [line] = error_lines(result.stderr)
    assert "'panels' revision p1" in line
    assert result.stderr.splitlines()[-2].startswith("Failed (panels): 2 revisions applied")


def test_json_lines_stay_machine_readable(
    database_url: str, run_cli: Any, cli_env: dict[str, str], tmp_path: Path,
) -> None:
    root = tmp_path / "plugins"
    two_plugins(root)
    result = run(run_cli, cli_env, database_url, root, "upgrade", log_format="json")
    events = [json.loads(line) for line in result.stderr.splitlines()]
    assert [e["event"] for e in events if e["event"].startswith("revision.")] == [
        "revision.applied"] * 3
    assert events[-1]["event"] == "run.finished" and events[-1]["outcome"] == "success"


def test_stamping_the_current_revision_reports_nothing_changed(
    database_url: str, run_cli: Any, cli_env: dict[str, str], tmp_path: Path,
) -> None:
    root = tmp_path / "plugins"
    two_plugins(root)
    assert run(run_cli, cli_env, database_url, root, "upgrade").returncode == 0
    result = run(run_cli, cli_env, database_url, root, "stamp", "--plugin", "core", "c2",
                 log_format="json")
    [finished] = [json.loads(x) for x in result.stderr.splitlines() if "run.finished" in x]
    assert finished["plugins"][0]["applied"] == 0
    assert finished["plugins"][0]["outcome"] == "up_to_date"
