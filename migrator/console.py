"""Output for people (a terminal, or `--log-format console`), like Flyway's or Django's
`migrate`: a header, one line per revision with its message and time, warnings in words, a
summary sentence at the end. JSON lines (off a terminal) stay exactly as they are: this is a
second renderer of the same events, not a second set of events.

Each error appears once: the command line prints it (`migrator: error: ...`), so the
`command.failed` event is not repeated here. Colours only on a terminal and without
`NO_COLOR` (https://no-color.org).
"""

from __future__ import annotations

import os
from collections.abc import Callable, MutableMapping
from typing import Any

from migrator.outcomes import Outcome, RunOutcome

Event = MutableMapping[str, Any]

_STYLES = {"ok": "32", "warning": "33", "error": "31", "dim": "2", "bold": "1"}


def colours_wanted(stream: Any) -> bool:
    return bool(getattr(stream, "isatty", lambda: False)()) and not os.environ.get("NO_COLOR")


class HumanRenderer:
    """structlog renderer: one readable line (or none) per event."""

    def __init__(self, *, colours: bool, verbose: bool = False) -> None:
        self.colours = colours
        self.verbose = verbose
        self._handlers: dict[str, Callable[[Event], str | None]] = {
            "run.started": self._run_started,
            "revision.applied": self._revision,
            "revision.reverted": self._revision,
            "revision.stamped": self._stamped,
            "revision.not_atomic": self._not_atomic,
            "lock.waiting": self._lock_waiting,
            "lock_timeout.retry": self._lock_retry,
            "backfill.done": self._backfill_done,
            "backfill.resuming": self._backfill_resuming,
            "backfill.already_done": self._backfill_already_done,
            "index.invalid_dropped": self._invalid_dropped,
            "run.stopping": self._stopping,
            "run.finished": self._finished,
            "command.failed": lambda _event: None,  # the command line prints the error once
            "lock.acquired": lambda _event: None,
            "plugin.discovered": lambda _event: None,
        }

    def __call__(self, _logger: Any, _method: str, event: Event) -> str:
        import structlog

        handler = self._handlers.get(str(event.get("event")))
        text = handler(event) if handler is not None else self._generic(event)
        if text is None:
            raise structlog.DropEvent
        return text

    # -- styling ----------------------------------------------------------------------------

    def _style(self, text: str, style: str) -> str:
        return f"\033[{_STYLES[style]}m{text}\033[0m" if self.colours else text

    # -- events ------------------------------------------------------------------------------

    def _run_started(self, event: Event) -> str:
        plugins = event.get("plugins") or []
        count = len(plugins)
        return self._style(
            f"{event.get('command', 'upgrade').capitalize()} {event.get('database')}: "
            f"{count} plugin{'' if count == 1 else 's'} to do ({', '.join(plugins)})", "bold")

    def _revision(self, event: Event) -> str:
        verb = "Applying" if event["event"] == "revision.applied" else "Reverting"
        message = f" {event['message']}" if event.get("message") else ""
        atomic = "" if event.get("atomic", True) else self._style(" (not atomic)", "dim")
        return (f"  {verb} {event.get('plugin')} {event.get('revision')}{message} ... "
                f"{self._style('ok', 'ok')} ({_duration(event.get('duration_ms'))}){atomic}")

    def _stamped(self, event: Event) -> str:
        changed = "stamped" if event.get("changed", True) else "already there, nothing changed"
        return f"  Stamping {event.get('plugin')} {event.get('revision')} ... {changed}"

    def _not_atomic(self, event: Event) -> str:
        return self._style(
            f"  warning: {event.get('plugin')} {event.get('revision')} committed migrator's "
            "transaction itself: kept and stamped, but not atomic", "warning")

    def _lock_waiting(self, event: Event) -> str:
        holder = ""
        if event.get("holder_pid"):
            holder = (f", held by pid {event['holder_pid']} "
                      f"({event.get('holder_application_name') or 'no application_name'})")
        return (f"  waiting for plugin {event.get('plugin')}'s lock{holder}, "
                f"{event.get('waited_s', 0)} s so far")

    def _lock_retry(self, event: Event) -> str:
        blockers = event.get("blockers") or []
        who = f"; blocked by pid {blockers[0].get('pid')}" if blockers else ""
        return self._style(
            f"  {event.get('plugin')} {event.get('revision')}: lock timeout, retry "
            f"{event.get('attempt')} of {event.get('of')} in {event.get('retry_in_s')} s{who}",
            "warning")

    def _backfill_done(self, event: Event) -> str | None:
        if not event.get("batches"):
            return None  # nothing was left to do: `backfill.already_done` said so
        return (f"    backfill {event.get('backfill')}: {event.get('rows_done'):,} rows in "
                f"{event.get('batches')} batches ({_duration(1000 * (event.get('seconds') or 0))})")

    def _backfill_already_done(self, event: Event) -> str:
        rows = event.get("rows_done") or 0
        done = f"already done ({rows:,} rows)" if rows else "no rows to update"
        return f"    backfill {event.get('backfill')}: {done}"

    def _backfill_resuming(self, event: Event) -> str:
        return (f"    backfill {event.get('backfill')}: resuming after "
                f"{event.get('rows_done'):,} rows")

    def _invalid_dropped(self, event: Event) -> str:
        return self._style(f"  dropped INVALID index(es) {', '.join(event.get('indexes', []))} "
                           "left by a cut-short build; rebuilding", "warning")

    def _stopping(self, event: Event) -> str:
        return self._style(f"  {event.get('signal')}: {event.get('detail')}", "warning")

    def _finished(self, event: Event) -> str:
        plugins = event.get("plugins") or []
        applied = sum(int(p.get("applied", 0)) for p in plugins)
        changed = [p for p in plugins if p.get("applied")]
        seconds = (event.get("duration_ms") or 0) / 1000
        outcome = event.get("outcome")
        verb = {"downgrade": "reverted in", "stamp": "stamped in"}.get(
            str(event.get("command")), "applied to")
        done = (f"{applied} revision{'' if applied == 1 else 's'} {verb} {len(changed)} "
                f"plugin{'' if len(changed) == 1 else 's'} in {seconds:.1f} s")
        if outcome == RunOutcome.SUCCESS:
            if not applied:
                return self._at_head(plugins) + (
                    f"Nothing to do: {len(plugins)} plugin(s) up to date.")
            return self._at_head(plugins) + self._style(done[0].upper() + done[1:] + ".", "ok")
        failed = [p["plugin"] for p in plugins if p.get("outcome") == Outcome.FAILED]
        if outcome == RunOutcome.INTERRUPTED:
            return self._style(f"Interrupted: {done}; rerun to continue.", "warning")
        where = f" ({', '.join(failed)})" if failed else ""
        return self._style(f"Failed{where}: {done} before the failure; see the error "
                           "below, fix it and rerun.", "error")

    def _at_head(self, plugins: list[dict[str, Any]]) -> str:
        """With -v: a line for each plugin that was already at head, before the summary."""
        if not self.verbose:
            return ""
        return "".join(f"  {p.get('plugin')} already at head ({p.get('to')})\n"
                       for p in plugins if p.get("outcome") == Outcome.UP_TO_DATE)

    def _generic(self, event: Event) -> str:
        """Any other event: its name and fields, plainly, warnings and errors marked."""
        level = str(event.get("level", "info"))
        name = str(event.get("event"))
        fields = " ".join(f"{key}={value}" for key, value in event.items()
                          if key not in ("event", "level", "timestamp"))
        line = f"  {name}" + (f": {fields}" if fields else "")
        if level in ("warning", "error"):
            return self._style(f"  {level}: {name}" + (f": {fields}" if fields else ""),
                               "warning" if level == "warning" else "error")
        return line


def _duration(milliseconds: Any) -> str:
    value = float(milliseconds or 0)
    return f"{value:.0f} ms" if value < 1000 else f"{value / 1000:.1f} s"
