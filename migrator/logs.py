"""structlog, configured once: events to stderr, JSON lines off a terminal, secrets redacted."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import MutableMapping
from typing import Any


def _import_structlog_without_rich() -> Any:
    """Import structlog while `rich` looks absent.

    structlog.dev imports rich (about 35 ms here, a sixth of a no-op run) only to pretty-print
    tracebacks, which migrator never asks for: it renders them as plain text. The no-op path
    runs at every pod start, so it should not pay for that. rich stays importable afterwards
    (typer uses it for --help).
    """
    if "structlog" in sys.modules or "rich" in sys.modules:
        import structlog as loaded

        return loaded
    sys.modules["rich"] = None  # type: ignore[assignment]  # None makes `import rich` fail
    try:
        import structlog as loaded
    finally:
        del sys.modules["rich"]
    return loaded


@functools.cache
def _structlog() -> Any:
    """structlog, imported on first use: `migrator upgrade` with nothing to do (migrator.fast)
    reports without it."""
    return _import_structlog_without_rich()

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING,
           "error": logging.ERROR}
_secrets: list[str] = []


def configure(*, log_format: str = "auto", level: str = "info",
              secrets: tuple[str, ...] = (), verbose: bool = False) -> None:
    """Set up structlog for this process; `secrets` are replaced by *** in every event."""
    structlog = _structlog()
    _secrets[:] = [s for s in secrets if s]
    stream = sys.stderr
    use_json = log_format == "json" or (log_format == "auto" and not stream.isatty())
    renderer: Any
    consumers: list[Any] = []
    if use_json:
        renderer = structlog.processors.JSONRenderer(default=str)
    else:
        from migrator.console import HumanRenderer, colours_wanted

        renderer = HumanRenderer(colours=colours_wanted(stream), verbose=verbose)
        if stream.isatty():
            from migrator.progress import BackfillProgress

            consumers.append(BackfillProgress())
    structlog.configure(
        processors=[
            *consumers,
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redact_secrets,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(file=_CurrentStderr()),
        cache_logger_on_first_use=True,
    )


# Shared by the processes of a `--jobs` pool (set before it forks): one line, one writer.
_line_lock: Any = None


def share_lines(context: Any) -> None:
    """Before forking workers: from now on every process of the run writes each log line
    whole, under one lock, so lines of several processes never interleave (a pipe only keeps
    writes of up to 4 KiB whole, and a line may be longer)."""
    global _line_lock
    if _line_lock is None:
        _line_lock = context.Lock()


class _CurrentStderr:
    """Writes to whatever `sys.stderr` is at the moment of writing (a test runner or
    `contextlib.redirect_stderr` may swap, and later close, the stream it had at configure
    time), a whole line at a time: structlog's logger writes the message and its newline
    separately."""

    def __init__(self) -> None:
        self._partial = ""

    def write(self, text: str) -> int:
        self._partial += text
        if "\n" in self._partial:
            whole, _, self._partial = self._partial.rpartition("\n")
            self._emit(whole + "\n")
        return len(text)

    def flush(self) -> None:
        if self._partial:
            text, self._partial = self._partial, ""
            self._emit(text)

    @staticmethod
    def _emit(text: str) -> None:
        # Bounded: a worker killed while writing (the OOM killer) never releases the lock, and
        # a torn line is better than a run that can no longer log.
        locked = _line_lock is not None and _line_lock.acquire(timeout=2.0)
        try:
            sys.stderr.write(text)
            sys.stderr.flush()
        finally:
            if locked:
                _line_lock.release()


def redact(text: str) -> str:
    """`text` with every registered secret replaced by ***."""
    for secret in _secrets:
        text = text.replace(secret, "***")
    return text


def first_line(exc: BaseException) -> str:
    """The first line of an error's message (the database's own, for a psycopg error wrapped
    by SQLAlchemy), password-free; the error's type name when it has no message."""
    original = getattr(exc, "orig", None) or exc
    text = str(original).strip().splitlines()
    return redact(text[0] if text else type(exc).__name__)


def redact_secrets(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: no registered secret survives into a rendered event."""
    if not _secrets:
        return event_dict
    for key, value in event_dict.items():
        if isinstance(value, str):
            event_dict[key] = redact(value)
        elif isinstance(value, list | tuple | dict):
            event_dict[key] = _redact_nested(value)
    return event_dict


def _redact_nested(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: _redact_nested(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_nested(v) for v in value]
    return value


def get_logger() -> Any:
    return _structlog().get_logger("migrator")
