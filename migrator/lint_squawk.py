"""Running squawk over the rendered SQL: the binary, the files it reads, its findings turned
into migrator's (one per problem, with its object), and `.squawk.toml`'s own exclusions."""

from __future__ import annotations

import json
import shutil
import subprocess
import sysconfig
import tempfile
import tomllib
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from migrator.errors import ConfigError, MigratorError
from migrator.lint_findings import SAME_PROBLEM, SQUAWK_EXCLUDED, Finding, Target
from migrator.sql_objects import object_named
from migrator.sql_output import BEGIN, COMMIT


def squawk_binary() -> str:
    """The `squawk` of this environment (the squawk-cli wheel's), else the one on PATH."""
    candidate = Path(sysconfig.get_path("scripts")) / "squawk"
    if candidate.is_file():
        return str(candidate)
    on_path = shutil.which("squawk")
    if on_path:
        return on_path
    raise ConfigError("migrator lint needs squawk, which is not installed; install it with: "
                      "pip install 'migrator[lint]' (the squawk-cli wheel)")


def _lint_file(target: Target) -> str:
    """The revision as squawk reads it: migrator's session settings (lock_timeout,
    search_path), then BEGIN/COMMIT and the revision's own statements (the version stamp and
    history row are migrator's)."""
    lines = list(target.settings)
    number = 0
    for statement in target.revision.statements:
        if statement.kind in (BEGIN, COMMIT) or statement.own:
            if statement.own:
                number += 1
                for offset in range(statement.sql.count("\n") + 1):
                    target.lines[len(lines) + offset] = number
            lines += statement.sql.split("\n")
    return "\n".join(lines) + "\n"


def run_squawk(targets: list[Target], binary: str, config: Path | None = None) -> list[Finding]:
    texts: dict[str, list[str]] = {}
    with tempfile.TemporaryDirectory(prefix="migrator-lint-") as tmp:
        by_file: dict[str, Target] = {}
        for target in targets:
            relative = f"{target.plugin.name}/{Path(target.revision.file).stem}.sql"
            path = Path(tmp) / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            text = _lint_file(target)
            path.write_text(text, encoding="utf-8")
            by_file[relative] = target
            texts[relative] = text.split("\n")
        command = [binary, "--reporter", "json", "--no-error-on-unmatched-pattern",
                   *(["--config", str(config.resolve())] if config else []),
                   *(f"--exclude={rule}" for rule in (*SQUAWK_EXCLUDED,
                                                       *_config_excluded(config))), *by_file]
        try:
            result = subprocess.run(command, cwd=tmp, capture_output=True, text=True,
                                    check=False, timeout=600)
        except OSError as exc:
            raise ConfigError(f"cannot run squawk ({binary}): {exc.strerror}; reinstall it "
                              "with: pip install 'migrator[lint]'") from None
        try:
            reported = json.loads(result.stdout or "[]")
        except ValueError:
            reported = None
        if not isinstance(reported, list):
            raise MigratorError(
                f"squawk exited {result.returncode} without a JSON report: "
                f"{(result.stderr or result.stdout).strip()[:500]}; check the squawk-cli install")
    findings = []
    for item in reported:
        target = by_file[item["file"]]
        number = target.lines.get(int(item.get("line", -1)))
        own = target.revision.own
        statement = own[number - 1].sql if number else None
        findings.append(Finding(
            plugin=target.plugin.name, revision=target.revision.revision,
            file=target.revision.path, statement=number, sql=statement,
            rule=str(item.get("rule_name")), source="squawk",
            message=str(item.get("message", "")).strip(), help=item.get("help"),
            object=object_named(statement, _span(texts[item["file"]], item))
            if statement else None))
    return findings


def _config_excluded(config: Path | None) -> list[str]:
    """The `excluded_rules` of a `.squawk.toml`: squawk drops them when `--exclude` is given
    on its command line, so migrator passes them along with its own."""
    if config is None:
        return []
    try:
        with config.open("rb") as file:
            rules = tomllib.load(file).get("excluded_rules", [])
    except OSError as exc:
        raise ConfigError(f"cannot read {config}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{config} is not valid TOML ({exc}); fix it") from None
    return [str(rule) for rule in rules] if isinstance(rules, list) else []


def _span(lines: list[str], item: Mapping[str, Any]) -> str | None:
    """The text a squawk finding points at (its line and column range)."""
    try:
        first, last = int(item["line"]), int(item.get("line_end", item["line"]))
        start, end = int(item.get("column", 0)), int(item.get("column_end", 0))
    except (KeyError, TypeError, ValueError):
        return None
    if not 0 <= first <= last < len(lines):
        return None
    if first == last:
        return lines[first][start:end] or None
    return "\n".join([lines[first][start:], *lines[first + 1:last], lines[last][:end]])


def merged(findings: list[Finding]) -> list[Finding]:
    """One finding per problem: the same rule twice on one object, or rules of one family
    (`SAME_PROBLEM`) on one statement, become the first of them."""
    family = {rule: group for group in SAME_PROBLEM for rule in group}
    kept: list[Finding] = []
    index: dict[tuple[Any, ...], int] = {}
    for item in findings:
        group = family.get(item.rule, (item.rule,))
        key = (item.plugin, item.revision, item.statement, group,
               item.object if item.rule not in family else None)
        if key in index:
            first = kept[index[key]]
            if item.rule != first.rule and item.rule not in first.also:
                # The family's first rule leads (migrator's own, or the more specific one).
                lead, other = (item, first) if group.index(item.rule) < group.index(
                    first.rule) else (first, item)
                kept[index[key]] = replace(lead, also=(*lead.also, other.rule, *other.also),
                                           object=lead.object or other.object)
            continue
        index[key] = len(kept)
        kept.append(item)
    return kept
