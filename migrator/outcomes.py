"""The outcomes a run reports: per plugin, and for the run (DESIGN.md "How a run goes" 9)."""

from __future__ import annotations

from enum import StrEnum


class Outcome(StrEnum):
    """What a run did to one plugin."""

    APPLIED = "applied"
    UP_TO_DATE = "up_to_date"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    SKIPPED = "skipped"  # not run: an earlier plugin failed, or a stop came first


class RunOutcome(StrEnum):
    SUCCESS = "success"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
