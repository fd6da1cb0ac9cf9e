"""The account of a run: per plugin from, to, applied, duration and outcome, and the run's
outcome; logged as `run.finished` and written as the Kubernetes termination message.

Kubernetes keeps 4096 bytes of a termination message. The message is always one line of valid
JSON; when the whole summary does not fit, it is shortened step by step (plugins that were up to
date become a count, then applied ones, then the error is cut), and every failed or interrupted
plugin stays named, as an entry or at least in `failed_plugins`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from migrator.outcomes import Outcome, RunOutcome

TERMINATION_LOG = Path("/dev/termination-log")
TERMINATION_LOG_LIMIT = 4096  # bytes Kubernetes keeps of a termination message


@dataclass(slots=True)
class PluginOutcome:
    """One entry of the run summary; `applied` grows as each revision commits."""

    plugin: str
    from_revision: str | None
    to_revision: str | None
    applied: list[str] = field(default_factory=list)
    duration_ms: int = 0
    outcome: Outcome = Outcome.SKIPPED

    def as_dict(self) -> dict[str, Any]:
        return {"plugin": self.plugin, "from": self.from_revision, "to": self.to_revision,
                "applied": len(self.applied), "duration_ms": self.duration_ms,
                "outcome": str(self.outcome)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PluginOutcome:
        """The inverse of `as_dict` (a worker process reports its plugin this way); the
        applied revisions are known by count only."""
        return cls(plugin=data["plugin"], from_revision=data["from"], to_revision=data["to"],
                   applied=["?"] * int(data["applied"]), duration_ms=int(data["duration_ms"]),
                   outcome=Outcome(data["outcome"]))


@dataclass(slots=True)
class RunSummary:
    """The one-line account of a run, for the log and the termination message."""

    command: str
    plugins: list[PluginOutcome] = field(default_factory=list)
    duration_ms: int = 0
    error: str | None = None
    stopped: bool = False  # a signal ended the run

    @property
    def outcome(self) -> RunOutcome:
        """`success` only when every plugin is applied or up to date."""
        if self.stopped or any(p.outcome is Outcome.INTERRUPTED for p in self.plugins):
            return RunOutcome.INTERRUPTED
        if self.error is not None or any(
                p.outcome not in (Outcome.APPLIED, Outcome.UP_TO_DATE) for p in self.plugins):
            return RunOutcome.FAILED
        return RunOutcome.SUCCESS

    def entry(self, plugin: str) -> PluginOutcome | None:
        return next((p for p in self.plugins if p.plugin == plugin), None)

    def put(self, outcome: PluginOutcome) -> None:
        """Replace the entry of `outcome.plugin` (or add it)."""
        for index, existing in enumerate(self.plugins):
            if existing.plugin == outcome.plugin:
                self.plugins[index] = outcome
                return
        self.plugins.append(outcome)

    @property
    def revisions_applied(self) -> int:
        return sum(len(p.applied) for p in self.plugins)

    def as_dict(self) -> dict[str, Any]:
        result: dict[str, Any] = {"command": self.command, "outcome": str(self.outcome),
                                  "duration_ms": self.duration_ms,
                                  "plugins": [p.as_dict() for p in self.plugins]}
        if self.error:
            result["error"] = self.error
        return result

    def termination_message(self, limit: int = TERMINATION_LOG_LIMIT) -> str:
        """The summary as one line of JSON of at most `limit` bytes, naming every failed or
        interrupted plugin."""
        document = self.as_dict()
        text = _dumps(document)
        if _fits(text, limit):
            return text
        troubled = [p.as_dict() for p in self.plugins
                    if p.outcome in (Outcome.FAILED, Outcome.INTERRUPTED)]
        applied = [p.as_dict() for p in self.plugins if p.outcome is Outcome.APPLIED]
        counts = {str(o): sum(1 for p in self.plugins if p.outcome is o) for o in Outcome}
        brief: dict[str, Any] = {key: value for key, value in document.items()
                                 if key != "plugins"}
        brief["plugin_counts"] = {k: v for k, v in counts.items() if v}
        brief["failed_plugins"] = [p["plugin"] for p in troubled]
        for plugins in (troubled + applied, troubled):
            text = _dumps({**brief, "plugins": plugins})
            if _fits(text, limit):
                return text
        if "error" in brief:
            brief["error"] = _cut(brief["error"], 300)
        names: list[str] = brief["failed_plugins"]
        for kept in range(len(names), -1, -1):
            candidate = {**brief, "failed_plugins": names[:kept]}
            if kept < len(names):
                candidate["failed_plugins_not_shown"] = len(names) - kept
            text = _dumps(candidate)
            if _fits(text, limit):
                return text
        return _dumps({"command": self.command, "outcome": str(self.outcome),
                       "failed_plugins_not_shown": len(names)})


def _dumps(document: dict[str, Any]) -> str:
    from migrator.logs import redact

    return redact(json.dumps(document, separators=(",", ":"), default=str))


def _fits(text: str, limit: int) -> bool:
    return len(text.encode()) <= limit


def _cut(text: str, length: int) -> str:
    return text if len(text) <= length else text[:length - 1] + "…"


def finish(summary: RunSummary) -> None:
    """Log `run.finished` and write the Kubernetes termination message when there is one."""
    from migrator.logs import get_logger

    get_logger().info("run.finished", **summary.as_dict())
    write_termination_message(summary)


def write_termination_message(summary: RunSummary) -> None:
    """The summary into `/dev/termination-log` (or `MIGRATOR_TERMINATION_LOG`) when it exists."""
    from migrator.logs import get_logger

    path = Path(os.environ.get("MIGRATOR_TERMINATION_LOG") or TERMINATION_LOG)
    if not path.parent.is_dir() or (path == TERMINATION_LOG and not path.exists()):
        return
    try:
        path.write_text(summary.termination_message(), encoding="utf-8")
    except OSError as exc:
        get_logger().warning("termination_log.unwritable", path=str(path), error=exc.strerror)
