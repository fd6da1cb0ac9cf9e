"""What `lint` reports: findings (each about one object), skipped revisions, reasoned opt-outs
and the report, plus the rule names migrator adds to squawk's."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from migrator.discovery import Plugin
from migrator.sql_output import RenderedRevision

CROSS_SCHEMA = "migrator-cross-schema"
DROP_SCHEMA = "migrator-drop-schema"
UNDECLARED_EXTENSION = "migrator-undeclared-extension"
OPT_OUT_NEEDS_REASON = "migrator-opt-out-needs-reason"
SQUAWK_CONFIG = ".squawk.toml"
BASELINE_VERSION = 1
_OPT_OUT = re.compile(
    r"^\s*#\s*migrator-lint:\s*ignore\s+(?P<rules>[A-Za-z0-9_\-]+(?:\s*,\s*[A-Za-z0-9_\-]+)*)"
    r"\s*(?:--\s*(?P<reason>.*?))?\s*$", re.M)
_CONTINUATION = re.compile(r"^\s*#\s*(\S.*)$")

# Rules that report one problem together: on one statement and object, the first is kept and
# the others are listed with it (`also`).
SAME_PROBLEM: tuple[tuple[str, ...], ...] = (
    ("adding-foreign-key-constraint", "constraint-missing-not-valid"),
    (DROP_SCHEMA, "ban-drop-schema"),
)

# squawk rules migrator turns off, and why (README, "Reviewing migrations", lists them too).
SQUAWK_EXCLUDED: Mapping[str, str] = {
    "require-statement-timeout": (
        "migrator sets lock_timeout, not statement_timeout, for schema revisions: a concurrent "
        "index build or a constraint validation may rightly run long without blocking anyone; "
        "the statements that block while they run long are flagged by their own rules"),
}


@dataclass(frozen=True, slots=True)
class Finding:
    plugin: str
    revision: str
    file: str  # the revision file, as discovered
    statement: int | None  # 1-based among the revision's own statements; None: the revision
    sql: str | None
    rule: str
    source: str  # squawk | migrator
    message: str
    help: str | None = None
    object: str | None = None  # what it is about: "column orders.region", "index ix on t"
    also: tuple[str, ...] = ()  # other rules that reported the same problem

    @property
    def fingerprint(self) -> tuple[str, str, str, str]:
        """What a baseline accepts it by: stable across edits that move lines."""
        return (self.plugin, self.revision, self.rule, self.object or "")

    def as_dict(self) -> dict[str, Any]:
        return {"plugin": self.plugin, "revision": self.revision, "file": self.file,
                "statement": self.statement, "sql": self.sql, "rule": self.rule,
                "object": self.object, "also": list(self.also),
                "source": self.source, "message": self.message, "help": self.help}


@dataclass(frozen=True, slots=True)
class Skipped:
    """A revision lint could not check: it cannot be rendered offline."""

    plugin: str
    revision: str
    file: str
    why: str

    def as_dict(self) -> dict[str, Any]:
        return {"plugin": self.plugin, "revision": self.revision, "file": self.file,
                "why": self.why}


@dataclass(frozen=True, slots=True)
class OptOut:
    rules: tuple[str, ...]
    reason: str | None
    line: int

    @classmethod
    def read(cls, path: Path) -> list[OptOut]:
        """The opt-outs in a revision file; a reason may go on over the comment lines below."""
        text = path.read_text(encoding="utf-8")
        found = []
        for match in _OPT_OUT.finditer(text):
            reason = (match.group("reason") or "").strip()
            if reason:
                for line in text[match.end():].lstrip("\n").splitlines():
                    more = _CONTINUATION.match(line)
                    if more is None or _OPT_OUT.match(line):
                        break
                    reason += " " + more.group(1).strip()
            found.append(cls(rules=tuple(r.strip() for r in match.group("rules").split(",")),
                             reason=reason or None, line=text.count("\n", 0, match.start()) + 1))
        return found


@dataclass(frozen=True, slots=True)
class Report:
    plugins: tuple[str, ...]
    revisions: int
    findings: tuple[Finding, ...]
    silenced: tuple[tuple[Finding, str], ...] = ()  # with the opt-out's reason
    excluded_rules: Mapping[str, str] = field(default_factory=lambda: dict(SQUAWK_EXCLUDED))
    skipped: tuple[Skipped, ...] = ()
    baselined: tuple[Finding, ...] = ()  # accepted by the baseline file
    squawk_config: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"plugins": list(self.plugins), "revisions_checked": self.revisions,
                "findings": [f.as_dict() for f in self.findings],
                "silenced": [{**f.as_dict(), "reason": reason} for f, reason in self.silenced],
                "baselined": [f.as_dict() for f in self.baselined],
                "skipped": [s.as_dict() for s in self.skipped],
                "squawk_config": self.squawk_config,
                "excluded_rules": dict(self.excluded_rules)}

    def summary(self) -> str:
        where = sorted({f"{f.plugin} {f.revision}" for f in self.findings})
        return (f"lint: {len(self.findings)} finding(s) in {len(where)} revision(s) "
                f"({', '.join(where)}); fix them, or silence a rule in the revision with "
                "`# migrator-lint: ignore <rule> -- <reason>` (or accept the known ones: "
                "migrator lint --write-baseline FILE, then --baseline FILE)")


@dataclass(slots=True)
class Target:
    plugin: Plugin
    revision: RenderedRevision
    settings: list[str]  # the SET statements of migrator's session setup for the plugin
    lines: dict[int, int]  # 0-based line in the file → 1-based own-statement number
    opt_outs: list[OptOut]
