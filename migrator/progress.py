"""A rich progress bar for backfills on a terminal: a consumer of `backfill.batch` events.

Installed as a structlog processor only when logs go to a terminal in console format; in
JSON (containers, CI) the events themselves are the progress report.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

FINISHING_EVENTS = frozenset({"backfill.done", "command.failed", "run.finished", "run.stopping"})


class BackfillProgress:
    """structlog processor: draws `backfill.batch` events as one bar per backfill."""

    def __init__(self, console: Any = None) -> None:
        self._console = console
        self._progress: Any = None
        self._tasks: dict[str, Any] = {}

    def __call__(self, _logger: Any, _method: str,
                 event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        event = event_dict.get("event")
        if event == "backfill.batch":
            self._update(event_dict)
            import structlog

            raise structlog.DropEvent  # the bar replaces the per-batch lines
        if event in FINISHING_EVENTS:
            self.stop()
        return event_dict

    def _update(self, event: MutableMapping[str, Any]) -> None:
        if self._progress is None:
            self._start()
        label = f"{event.get('plugin')} {event.get('revision')} {event.get('backfill')}"
        # The true total counted when the walk started; the planner's estimate only for a
        # walk begun before migrator counted.
        total = event.get("total_rows") or event.get("estimated_total")
        done = event.get("rows_done") or 0
        if label not in self._tasks:
            self._tasks[label] = self._progress.add_task(label, total=total)
        self._progress.update(self._tasks[label], completed=done,
                              total=max(total, done) if total else None)

    def _start(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._progress = Progress(
            TextColumn("{task.description}", style="bold", markup=False), BarColumn(),
            MofNCompleteColumn(), TextColumn("rows"), _rate_column(), TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self._console or Console(stderr=True), transient=False)
        self._progress.start()

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
            self._tasks.clear()


def _rate_column() -> Any:
    """Rows per second, from rich's own speed estimate (blank until it has one)."""
    from rich.progress import ProgressColumn
    from rich.text import Text

    class RateColumn(ProgressColumn):
        def render(self, task: Any) -> Text:
            speed = task.finished_speed or task.speed
            return Text("" if speed is None else f"{speed:,.0f} rows/s")

    return RateColumn()
