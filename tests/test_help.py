"""Help and usage errors by the conventions: every option that takes a value shows its default
(or that it is required), settings show their variable, no Rich markup or boxes, usage errors
as a plain `Error:` line with the usage line and exit 2."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from migrator.cli import app

# Options read from MIGRATOR_* variables as well as flags (config.Settings.from_sources).
SETTINGS = {"--database-url", "--migrations-dir", "--embedded", "--connect-timeout",
            "--log-format", "--log-level", "--verbose", "--lock-wait", "--lock-timeout",
            "--retries", "--isolate-roles", "--jobs"}
BOXES = re.compile("[\u2500-\u257f]")


def help_text(*command: str) -> str:
    result = CliRunner().invoke(app, [*command, "--help"], prog_name="migrator",
                                env={"COLUMNS": "100", "NO_COLOR": "1"})
    assert result.exit_code == 0, result.output
    return result.output


def commands() -> list[tuple[str, ...]]:
    """Every command, read from the top-level help (and the embedded group's)."""
    def listed(text: str) -> list[str]:
        section = text.split("Commands:", 1)[1]
        return [line.split()[0] for line in section.splitlines() if line.startswith("  ")
                and not line.startswith("   ")]

    found = [(name,) for name in listed(help_text())]
    assert ("upgrade",) in found and ("embedded",) in found
    found += [("embedded", name) for name in listed(help_text("embedded"))]
    return [(), *found]


def options(text: str) -> dict[str, str]:
    """Each option's first name -> its whole entry (continuation lines joined)."""
    section = text.split("Options:", 1)[1].split("Commands:", 1)[0]
    entries: dict[str, str] = {}
    current = ""
    for line in section.splitlines():
        head = re.match(r"  (-\w, )?(--[\w-]+)", line)
        if head:
            current = head.group(2)
            entries[current] = line.strip()
        elif current and line.strip():
            entries[current] += " " + line.strip()
    return entries


@pytest.mark.parametrize("command", commands(), ids=lambda c: " ".join(c) or "migrator")
def test_every_option_shows_its_default_and_variable(command: tuple[str, ...]) -> None:
    text = help_text(*command)
    assert not BOXES.search(text), text
    assert "Example:" in text or command[:1] == ("embedded",)
    for name, entry in options(text).items():
        takes_value = re.match(r"(-\w, )?--[\w-]+ <", entry) is not None
        if takes_value:
            assert "default" in entry or "required" in entry, (command, entry)
        if name in SETTINGS:
            assert "env: MIGRATOR_" in entry, (command, entry)


def test_markup_like_text_is_shown_as_written() -> None:
    assert "^[a-z][a-z0-9_]{0,47}$" in help_text("new-plugin")


@pytest.mark.parametrize("command", ["downgrade", "stamp", "repair", "status"])
def test_commands_offer_only_the_options_they_accept(command: str) -> None:
    assert "--jobs" not in options(help_text(command))


def test_downgrade_sql_starts_from_the_head_not_base() -> None:
    entry = options(help_text("downgrade"))["--from"]
    assert "the head" in entry and "base" not in entry


@pytest.mark.parametrize(("argv", "message"), [
    (["upgrade", "--bogus"], "Error: No such option: --bogus"),
    (["upgrade", "--jobs", "x"], "Error: Invalid value for '--jobs': 'x' is not a valid int"),
    (["frob"], "Error: No such command 'frob'"),
    (["history"], "Error: Missing option '--plugin'"),
])
def test_usage_errors_are_one_plain_line_with_the_usage_and_exit_2(
    argv: list[str], message: str,
) -> None:
    result = CliRunner().invoke(app, argv, prog_name="migrator", env={"NO_COLOR": "1"})
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines[0].startswith("Usage: migrator")
    errors = [line for line in lines if line.startswith("Error:")]
    assert len(errors) == 1 and errors[0].startswith(message), lines
    assert not BOXES.search(result.output)
    assert "Traceback" not in result.output
