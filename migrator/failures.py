"""How a revision's failure is told: what it did in a few words, the database error under
SQLAlchemy's wrapping, and the two failures `migrator.steps` raises itself."""

from __future__ import annotations

import psycopg

from migrator.errors import MigrationFailed
from migrator.logs import first_line


class LockConflict(Exception):
    """A revision's statement hit `lock_timeout` (or a deadlock): rolled back, retryable."""

    def __init__(self, revision: str, error: BaseException) -> None:
        super().__init__(str(error))
        self.revision, self.error = revision, error



class RevisionBroke(Exception):
    """What a revision did to migrator's transaction that fails it."""


def describe(exc: BaseException) -> str:
    """What a revision did, in a few words: its exit, its exception, or the database's
    message."""
    if isinstance(exc, SystemExit):
        return f"called sys.exit({exc.code!r})"
    if isinstance(exc, KeyboardInterrupt):
        return "raised KeyboardInterrupt"
    if isinstance(exc, RevisionBroke | MigrationFailed):
        return first_line(exc)
    original = getattr(exc, "orig", None) or exc
    if isinstance(original, psycopg.Error):
        return first_line(original)
    return f"{type(exc).__name__}: {first_line(exc)}"


def database_cause(exc: BaseException) -> BaseException:
    """The psycopg error under a SQLAlchemy wrapper (or in the chain), else `exc` itself."""
    seen: BaseException | None = exc
    while seen is not None:
        original = getattr(seen, "orig", None)
        if isinstance(original, psycopg.Error):
            return original
        if isinstance(seen, psycopg.Error):
            return seen
        seen = seen.__cause__
    return exc
