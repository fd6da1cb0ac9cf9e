"""The one set of transient SQLSTATEs, and the retry policies built on tenacity.

Connecting, DDL lock-timeout retries and backfill batches all decide "worth another
try?" with `is_transient`. Every policy takes `sleep` so tests can run a schedule instantly.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from typing import Any

import tenacity

SERIALIZATION_FAILURE = "40001"
DEADLOCK_DETECTED = "40P01"
LOCK_NOT_AVAILABLE = "55P03"  # lock_timeout fired
QUERY_CANCELED = "57014"  # statement_timeout fired
ADMIN_SHUTDOWN = "57P01"  # pg_terminate_backend, server shutting down
CRASH_SHUTDOWN = "57P02"
CANNOT_CONNECT_NOW = "57P03"  # server starting up

TRANSIENT_SQLSTATES = frozenset({
    SERIALIZATION_FAILURE, DEADLOCK_DETECTED, LOCK_NOT_AVAILABLE, QUERY_CANCELED,
    ADMIN_SHUTDOWN, CRASH_SHUTDOWN, CANNOT_CONNECT_NOW,
})
# Worth retrying a revision's transaction after rolling it back: the schema change lost a
# race for a lock, nothing else went wrong.
LOCK_CONFLICT_SQLSTATES = frozenset({LOCK_NOT_AVAILABLE, DEADLOCK_DETECTED, SERIALIZATION_FAILURE})

BACKOFF_INITIAL = 0.5
BACKOFF_CAP = 30.0


def sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE of a psycopg error, also when wrapped by SQLAlchemy (`.orig`)."""
    for candidate in (exc, getattr(exc, "orig", None), exc.__cause__):
        code = getattr(candidate, "sqlstate", None)
        if isinstance(code, str):
            return code
    return None


def connection_lost(exc: BaseException) -> bool:
    """True when the error means the connection itself is gone (class 08, shutdown, closed)."""
    import psycopg

    code = sqlstate(exc) or ""
    if code.startswith("08") or code in (ADMIN_SHUTDOWN, CRASH_SHUTDOWN):
        return True
    if getattr(exc, "connection_invalidated", False):
        return True
    original = getattr(exc, "orig", None) or exc
    return isinstance(original, psycopg.OperationalError) and not code


def is_transient(exc: BaseException) -> bool:
    """Worth another attempt: a lost race, a timeout, a shutdown or a lost connection."""
    code = sqlstate(exc)
    if code is not None:
        return code in TRANSIENT_SQLSTATES or code.startswith("08")
    return connection_lost(exc)


def backoff_delays(
    *, initial: float = BACKOFF_INITIAL, cap: float = BACKOFF_CAP,
    rng: random.Random | None = None,
) -> Iterator[float]:
    """Exponential backoff with full jitter: initial·2ⁿ capped at `cap`, drawn in [½d, d]."""
    draw = rng or random.Random()
    delay = initial
    while True:
        yield draw.uniform(delay / 2, delay)
        delay = min(delay * 2, cap)


def retry_connect(
    attempt: Callable[[float], Any], *, timeout: float,
    on_retry: Callable[[int, BaseException, float], None],
    sleep: Callable[[float], None] = tenacity.nap.sleep,
) -> Any:
    """Call `attempt(seconds_left)` until it stops raising OperationalError or `timeout` passes."""
    import psycopg

    def before_sleep(state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        assert exc is not None
        on_retry(state.attempt_number, exc, state.upcoming_sleep)

    import time

    deadline = time.monotonic() + timeout
    # Exponential with jitter (wait_exponential_jitter's `initial` is deprecated in tenacity 9).
    backoff = tenacity.wait_exponential(multiplier=BACKOFF_INITIAL, max=5.0) + \
        tenacity.wait_random(0, 0.5)

    def wait(state: tenacity.RetryCallState) -> float:
        # Never sleep past the deadline: --connect-timeout 1 means about one second.
        return max(0.0, min(backoff(state), deadline - time.monotonic()))

    def run() -> Any:
        return attempt(max(deadline - time.monotonic(), 1.0))

    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(psycopg.OperationalError),
        wait=wait,
        stop=tenacity.stop_after_delay(timeout),
        before_sleep=before_sleep,
        reraise=True,
        sleep=sleep,
    )
    return retrying(run)


def batch_retrying(
    *, max_retries: int, before_retry: Callable[[int, BaseException, float], None],
    sleep: Callable[[float], None] = tenacity.nap.sleep,
    initial: float = 0.2, cap: float = 10.0,
) -> tenacity.Retrying:
    """Retry a backfill batch on transient errors: exponential backoff with jitter, at most
    `max_retries` retries; `before_retry(attempt, error, delay)` may reconnect or split."""

    def hook(state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        assert exc is not None
        before_retry(state.attempt_number, exc, state.upcoming_sleep)

    return tenacity.Retrying(
        retry=tenacity.retry_if_exception(is_transient),
        wait=tenacity.wait_exponential(multiplier=initial, max=cap)
        + tenacity.wait_random(0, initial),
        stop=tenacity.stop_after_attempt(max_retries + 1),
        before_sleep=hook,
        reraise=True,
        sleep=sleep,
    )
