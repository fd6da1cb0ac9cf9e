"""The entry point: `migrator upgrade` with nothing to do answers without loading the CLI.

Every pod start of every replica runs `migrator upgrade`, and almost always there is nothing to
do. For exactly that case — the bare `upgrade` command, configured through `MIGRATOR_*`
variables, JSON logs (off a terminal), no `--isolate-roles` — this path discovers the trees
(through the revision index, `migrator.revision_index`: unchanged files are not opened, and
an unchanged migrations directory is not even listed, `migrator.tree_summary`), connects
once, reads every version table in one query and, when every plugin is at head, writes the
same `run.finished` event (and termination message) the full command would, without importing
typer, rich or structlog, and leaves without the interpreter's teardown. Anything else —
flags, something pending, an error of any kind — goes to the full command line, which does the
work and reports it as usual (the fast path never reports an error itself).
"""

from __future__ import annotations

import gc
import os
import sys
import time
from contextlib import suppress
from typing import Any


def main() -> None:
    if sys.argv[1:] == ["upgrade"] and _answered_nothing_to_do():
        _leave(0)  # the work is done and reported
    from migrator.cli import app

    try:
        app(prog_name="migrator")
        code = 0
    except SystemExit as exc:
        if isinstance(exc.code, str):
            sys.stderr.write(exc.code + "\n")
        code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    _leave(code)


def _leave(code: int) -> None:
    """Exit without the interpreter's teardown (a tenth of a second with SQLAlchemy and Alembic
    loaded): everything migrator must leave behind is written and flushed by now — the
    termination message, the log, the index; --jobs workers are joined; the embedded server
    is meant to outlive the run."""
    for stream in (sys.stdout, sys.stderr):
        # A closed pipe (`| head`) or stream: there is nothing left to flush to.
        with suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)


def _answered_nothing_to_do() -> bool:
    """True when it found nothing to do and reported it; False to hand over to the CLI."""
    started = time.monotonic()
    gc.disable()  # a short run allocating thousands of small objects: collections cost time
    try:
        return _nothing_to_do(started)
    except Exception:
        return False
    finally:
        gc.enable()


def _nothing_to_do(started: float) -> bool:
    from migrator.config import Settings

    settings = Settings.from_sources({}, os.environ)
    json_logs = settings.log_format == "json" or (
        settings.log_format == "auto" and not sys.stderr.isatty())
    if (settings.database_url is None or settings.embedded or settings.isolate_roles
            or not json_logs):
        return False
    from migrator import connections, db, discovery
    from migrator.plan import Plan

    found = discovery.discover(settings.migrations_dir)
    if any(len(getattr(p, "heads", ())) > 1 for p in found):
        return False
    # One attempt: a server that is not answering yet is the full command's to wait for.
    with connections.connect(settings.database_url, timeout=0) as conn:
        plan = Plan.build(found, db.read_current_revisions(conn, found))
    if plan.pending or plan.unknown:
        return False
    _report(plan, settings, started)
    return True


def _report(plan: Any, settings: Any, started: float) -> None:
    """`run.finished` as structlog's JSON renderer writes it, and the termination message."""
    import json
    from datetime import UTC, datetime

    from migrator.outcomes import Outcome
    from migrator.summary import PluginOutcome, RunSummary, write_termination_message

    summary = RunSummary(command="upgrade", plugins=[
        PluginOutcome(p.name, p.current_label, p.current_label, outcome=Outcome.UP_TO_DATE)
        for p in plan.plugins])
    summary.duration_ms = int((time.monotonic() - started) * 1000)
    if settings.log_level in ("debug", "info"):
        event = {**summary.as_dict(), "event": "run.finished", "level": "info",
                 "timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")}
        sys.stderr.write(json.dumps(event, default=str) + "\n")
    write_termination_message(summary)
