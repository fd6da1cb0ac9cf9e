"""A backfill's specification: the validated arguments of `migrator.backfill(...)`, the
batch-size controller, and the specification rendered as SQL comments for review. Shared by
the walk (`migrator.backfill`), its statements (`migrator.backfill_sql`) and offline output."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from migrator.config import parse_duration
from migrator.errors import BackfillError, ConfigError

MIN_BATCH = 10
MAX_BATCH = 100_000
# With target_batch_time=None the batch size adapts toward this (bench/RESULTS.md): long
# enough that the per-batch cost (a round trip, a commit, the checkpoint row) is a few percent,
# so the walk runs at about the speed of one big UPDATE; short enough that a concurrent write
# waiting on a batch's row locks waits well under 100 ms, and that at any moment only a small
# share of a big table is locked. 0 keeps every batch at batch_size.
DEFAULT_TARGET_BATCH_TIME = 0.05
# How far one adjustment may move the batch size: gradual near the target, like a
# controller; faster while batches take under a quarter of it (the start is only a guess);
# down to what the batch measured, at most /8, after one over SLOW times the target.
MAX_GROWTH, MAX_SHRINK = 1.5, 0.5
FAST_GROWTH = 4.0
SLOW, MAX_DROP = 2.0, 0.125
PROGRESS_TABLE = ("migrator", "backfill_progress")
# Migration-context option: in offline (as_sql) rendering, a callable given each backfill's
# `BackfillSpec.describe()` just before it renders itself (`--dry-run` shows the specification).
RENDER_HOOK = "migrator.backfill_rendered"

DEFAULT_BATCH_SIZE = 1000


@dataclass(frozen=True, slots=True)
class BackfillSpec:
    """The validated arguments, identifiers split, durations in seconds."""

    table: tuple[str, ...]
    key: tuple[str, ...]
    set: str | None
    transform: Callable[[list[dict[str, Any]]], Iterable[Mapping[str, Any] | None]] | None
    columns: tuple[str, ...]
    where: str | None
    params: Mapping[str, Any]
    name: str
    batch_size: int
    pause: float
    target_batch_time: float | None
    statement_timeout: float
    max_retries: int

    def describe(self) -> dict[str, Any]:
        """The specification as plain values (a transform by its name)."""
        transform = None if self.transform is None else getattr(
            self.transform, "__qualname__", type(self.transform).__name__)
        return {"name": self.name, "table": ".".join(self.table), "key": list(self.key),
                "set": self.set, "transform": transform, "columns": list(self.columns),
                "where": self.where, "params": dict(self.params), "batch_size": self.batch_size,
                "pause": self.pause, "target_batch_time": self.target_batch_time,
                "statement_timeout": self.statement_timeout, "max_retries": self.max_retries}


def validate(table: str, set_: str | None, transform: Any, columns: Sequence[str],
              where: str | None, key: str | Sequence[str], params: Mapping[str, Any] | None,
              name: str | None, batch_size: int | None, pause: float | str,
              target_batch_time: float | str | None, statement_timeout: float | str,
              max_retries: int) -> BackfillSpec:
    if (set_ is None) == (transform is None):
        raise BackfillError(f"backfill({table!r}): give exactly one of set= (SQL assignments) "
                            "or transform= (a Python callable)")
    if transform is not None and not callable(transform):
        raise BackfillError(f"backfill({table!r}): transform must be callable")
    keys = (key,) if isinstance(key, str) else tuple(key)
    parts = tuple(table.split("."))
    for identifier in (*parts, *keys, *columns):
        if not identifier or not isinstance(identifier, str):
            raise BackfillError(f"backfill({table!r}): empty table, key or column name")
    if len(parts) > 2 or not keys:
        raise BackfillError(f"backfill({table!r}): table must be 'table' or 'schema.table' and "
                            "key at least one column")
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(
            batch_size, int) or not 1 <= batch_size <= MAX_BATCH):
        raise BackfillError(f"backfill({table!r}): batch_size must be a whole number from 1 "
                            f"to {MAX_BATCH}, got {batch_size!r}")
    if max_retries < 0:
        raise BackfillError(f"backfill({table!r}): max_retries must not be negative")
    what = f"backfill({table!r})"
    try:
        seconds = {argument: parse_duration(value, what=f"{what} {argument}")
                   for argument, value in (("pause", pause),
                                           ("target_batch_time", target_batch_time),
                                           ("statement_timeout", statement_timeout))
                   if value is not None}
    except ConfigError as exc:
        raise BackfillError(str(exc)) from None
    # The contract: an explicit size alone is fixed; with a target it starts there and adapts;
    # neither, migrator's default start adapting toward its default target.
    if "target_batch_time" in seconds:
        target: float | None = seconds["target_batch_time"] or None
    else:
        target = None if batch_size is not None else DEFAULT_TARGET_BATCH_TIME
    return BackfillSpec(
        table=parts, key=keys, set=set_, transform=transform, columns=tuple(columns),
        where=where, params=dict(params or {}), name=name or parts[-1],
        batch_size=batch_size or DEFAULT_BATCH_SIZE, pause=seconds["pause"],
        target_batch_time=target,
        statement_timeout=seconds["statement_timeout"], max_retries=max_retries)


class BatchSizer:
    """The batch size, as a controller. With a target duration, each batch moves it toward that
    duration from a smoothed per-key cost: quickly up while batches are far under the target
    (up to x4 a batch; the start is a guess), gradually near it (x1.5 up, /2 down, so one
    noisy batch does not swing it), and straight down after a batch far over it (a lock wait,
    a checkpoint, a denser stretch of the table: the next one must be short, not half as
    long). Conflicts that were retried (lock timeout, deadlock) halve it, and so does a batch
    that hit the statement timeout. Always within [minimum, maximum]."""

    def __init__(self, size: int, target: float | None, *, minimum: int = MIN_BATCH,
                 maximum: int = MAX_BATCH) -> None:
        self.target, self.minimum, self.maximum = target, minimum, maximum
        self.size = size
        self.seconds_per_row: float | None = None

    def observe(self, keys: int, seconds: float) -> int:
        """A batch walked `keys` keys in `seconds`; returns the next batch's size."""
        if self.target is None or keys <= 0 or seconds <= 0:
            return self.size
        per_row = seconds / keys
        if seconds > SLOW * self.target:
            # Far over: trust this batch alone, and size the next one from it.
            self.seconds_per_row = per_row
            wanted = self.target / per_row
            self._set(max(wanted, self.size * MAX_DROP))
            return self.size
        # Smoothed, so one slow batch (a checkpoint, a blocked row) does not swing the size.
        self.seconds_per_row = per_row if self.seconds_per_row is None else (
            0.7 * self.seconds_per_row + 0.3 * per_row)
        wanted = self.target / self.seconds_per_row
        if keys < self.size and wanted > self.size:
            return self.size  # a short batch (the end of the walk) says nothing about growth
        growth = FAST_GROWTH if seconds < self.target / FAST_GROWTH else MAX_GROWTH
        self._set(min(max(wanted, self.size * MAX_SHRINK), self.size * growth))
        return self.size

    def contended(self) -> int:
        """The batch was retried after a lock conflict: fewer rows locked, fewer conflicts."""
        self._set(self.size * MAX_SHRINK)
        return self.size

    def split(self) -> int:
        """The batch hit the statement timeout: retry it with half as many rows."""
        self.size = max(1, self.size // 2)
        # The smoothed cost was too optimistic: start it again from what the retry measures.
        self.seconds_per_row = None
        return self.size

    def _set(self, size: float) -> None:
        self.size = int(min(max(size, self.minimum), self.maximum))
