"""The terminal progress bar is a consumer of `backfill.batch` events."""

from __future__ import annotations

import io

import pytest
import structlog
from rich.console import Console

from migrator.progress import BackfillProgress


def _batch(rows_done: int, total: int | None) -> dict[str, object]:
    return {"event": "backfill.batch", "plugin": "panels", "revision": "c0ffee",
            "backfill": "panels", "rows_done": rows_done, "estimated_total": total}


def test_batches_draw_a_bar_instead_of_log_lines() -> None:
    """Each batch event moves the bar (rows done of the estimate) and is not printed as a line."""
    screen = io.StringIO()
    bars = BackfillProgress(Console(file=screen, force_terminal=True, width=120))
    for done in (250, 500):
        with pytest.raises(structlog.DropEvent):
            bars(None, "info", _batch(done, 1000))
    finished = bars(None, "info", {"event": "backfill.done", "rows": 500})
    text = screen.getvalue()
    assert "panels c0ffee panels" in text
    assert "500/1000" in text
    assert "backfill.batch" not in text
    assert finished["event"] == "backfill.done"  # other events pass through to the renderer


def test_unknown_total_and_rows_beyond_the_estimate_still_draw() -> None:
    """Without an estimate the bar counts rows; rows past the estimate raise the total."""
    screen = io.StringIO()
    bars = BackfillProgress(Console(file=screen, force_terminal=True, width=120))
    with pytest.raises(structlog.DropEvent):
        bars(None, "info", _batch(300, None))
    with pytest.raises(structlog.DropEvent):
        bars(None, "info", _batch(1500, 1000))
    bars.stop()
    assert "1500/1500" in screen.getvalue()
