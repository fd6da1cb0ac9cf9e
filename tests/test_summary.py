"""The run summary and the Kubernetes termination message (DESIGN.md "How a run goes" 9):
always one line of valid JSON within 4096 bytes, naming every failed plugin."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from helpers import error_lines
from treebuilder import Rev, write_plugin

from migrator.outcomes import Outcome
from migrator.summary import TERMINATION_LOG_LIMIT, PluginOutcome, RunSummary


def summary_of(count: int, failing: set[int], name_length: int = 40) -> RunSummary:
    summary = RunSummary(command="upgrade", error="plugin failed: " + "x" * 3000)
    for number in range(count):
        name = f"plugin_{number:04d}_".ljust(name_length, "n")
        outcome = Outcome.FAILED if number in failing else Outcome.APPLIED
        summary.put(PluginOutcome(name, "a" * 12, "b" * 12, ["r"] * 3, 1234, outcome))
    return summary


def test_a_small_summary_is_written_whole() -> None:
    summary = summary_of(3, {2})
    document = json.loads(summary.termination_message())
    assert document == json.loads(json.dumps(summary.as_dict()))
    assert document["outcome"] == "failed"


def test_a_large_summary_keeps_every_failed_plugin_and_counts_the_rest() -> None:
    failing = set(range(0, 400, 37))
    summary = summary_of(400, failing)
    text = summary.termination_message()
    assert len(text.encode()) <= TERMINATION_LOG_LIMIT and "\n" not in text
    document = json.loads(text)
    named = {p["plugin"] for p in document.get("plugins", [])} | set(
        document.get("failed_plugins", []))
    assert {summary.plugins[n].plugin for n in failing} <= named
    assert document["plugin_counts"] == {"applied": 400 - len(failing), "failed": len(failing)}


def test_when_even_the_names_do_not_fit_it_stays_valid_json_and_counts_them() -> None:
    summary = summary_of(2000, set(range(2000)), name_length=60)
    text = summary.termination_message()
    assert len(text.encode()) <= TERMINATION_LOG_LIMIT
    document = json.loads(text)
    assert len(document["failed_plugins"]) + document["failed_plugins_not_shown"] == 2000


def test_thirty_plugins_with_the_last_failing_name_it_in_the_termination_file(
    database_url: str, run_cli: Any, cli_env: dict[str, str], tmp_path: Path,
) -> None:
    root = tmp_path / "plugins"
    for number in range(30):
        body = "raise RuntimeError('broken on purpose')" if number == 29 else "pass"
        write_plugin(root, f"plugin_{number:02d}_" + "x" * 38,  # 48 characters, the longest
                     [Rev(f"r{number:02d}", None, body)])
    termination = tmp_path / "termination-log"
    result = run_cli("upgrade", env={**cli_env, "MIGRATOR_DATABASE_URL": database_url,
                                     "MIGRATOR_MIGRATIONS_DIR": str(root),
                                     "MIGRATOR_TERMINATION_LOG": str(termination)})
    assert result.returncode == 1, result.stderr
    text = termination.read_text()
    assert len(text.encode()) <= TERMINATION_LOG_LIMIT and "\n" not in text
    document = json.loads(text)
    assert document["outcome"] == "failed"
    failed = [p for p in document["plugins"] if p["outcome"] == "failed"]
    assert [p["plugin"] for p in failed] == ["plugin_29_" + "x" * 38]
    assert document["plugin_counts"] == {"applied": 29, "failed": 1}


def test_several_plugins_failing_in_one_jobs_run_are_all_named(
    database_url: str, run_cli: Any, cli_env: dict[str, str], tmp_path: Path,
) -> None:
    root = tmp_path / "plugins"
    failing = {f"a_fails_{n}" for n in range(3)}
    for name in sorted(failing):
        write_plugin(root, name, [Rev(f"{name}_1", None, "raise RuntimeError('no')")])
    for number in range(27):
        write_plugin(root, f"ok_{number:02d}_padded_name_padded_name_padded_name",
                     [Rev(f"ok{number:02d}", None, "pass")])
    termination = tmp_path / "termination-log"
    result = run_cli("upgrade", "--jobs", "3",
                     env={**cli_env, "MIGRATOR_DATABASE_URL": database_url,
                          "MIGRATOR_MIGRATIONS_DIR": str(root),
                          "MIGRATOR_TERMINATION_LOG": str(termination)})
    assert result.returncode == 1, result.stderr
    assert len(error_lines(result.stderr)) == 1
    document = json.loads(termination.read_text())
    named = {p["plugin"] for p in document["plugins"] if p["outcome"] == "failed"} | set(
        document.get("failed_plugins", []))
    assert named == failing
    assert document["outcome"] == "failed"
