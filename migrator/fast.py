"""The entry point: `migrator upgrade` with nothing to do answers without loading the CLI.

Every pod start of every replica runs `migrator upgrade`, and almost always there is nothing to
do. For exactly that case — the bare `upgrade` command, configured through `MIGRATOR_*`
variables, JSON logs (off a terminal), no `--isolate-roles` — this path discovers the trees
(through the revision index, `migrator.revision_index`: unchanged files are not opened, and
an unchanged migrations directory is not even listed, `migrator.tree_summary`) while a
thread connects once and reads the version tables the index names (two queries, used only if
discovery finds exactly those tables; else they are read again) and, when every plugin is at
head, writes the same `run.finished` event (and termination message) the full command would,
without importing typer, rich or structlog, and leaves without the interpreter's teardown.
Anything else —
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
    from migrator import db, discovery, tree_summary
    from migrator.plan import Plan
    from migrator.revision_index import RevisionIndex

    index = RevisionIndex.load(str(settings.migrations_dir))
    # The server's work (connecting, reading a hundred version tables on a fresh backend)
    # overlaps discovery's, which checks the trees meanwhile; the read is used only if the
    # trees turn out to have exactly the version tables the index's summary named.
    early = _EarlyRead(settings.database_url,
                       tree_summary.version_tables_named(index, db.VERSION_TABLE))
    try:
        found = discovery.discover(settings.migrations_dir, index=index)
        if any(len(getattr(p, "heads", ())) > 1 for p in found):
            return False
        conn, current = early.result()
        if db.version_tables_of(found) != early.wanted:
            current = db.read_current_revisions(conn, found)
        plan = Plan.build(found, current)
    finally:
        early.close()
    if plan.pending or plan.unknown:
        return False
    _report(plan, settings, started)
    return True


class _EarlyRead:
    """Connect and read `wanted` version tables in a thread (psycopg waits without the GIL)."""

    def __init__(self, url: Any, wanted: list[tuple[str, str]]) -> None:
        import threading

        self.url, self.wanted = url, wanted
        self.conn: Any = None
        self.current: dict[str, tuple[str, ...]] = {}
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        from migrator import connections, db

        try:
            # One attempt: a server that is not answering yet is the full command's to wait
            # for.
            self.conn = connections.connect(self.url, timeout=0)
            self.current = db.read_version_tables(self.conn, self.wanted)
        except BaseException as exc:  # handed to the main thread, which falls back
            self.error = exc

    def result(self) -> tuple[Any, dict[str, tuple[str, ...]]]:
        self.thread.join()
        if self.error is not None:
            raise self.error
        return self.conn, self.current

    def close(self) -> None:
        self.thread.join()
        if self.conn is not None:
            self.conn.close()


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
