"""Per-plugin session advisory locks, polled so a waiter never holds a transaction."""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg

from migrator.errors import Interrupted, LockWaitTimeout

REPORT_EVERY = 5.0


def advisory_key(name: str) -> int:
    """A stable signed 64-bit key for `name` (the advisory lock namespace is database-wide)."""
    digest = hashlib.blake2b(name.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def plugin_key(plugin: str) -> int:
    return advisory_key(f"migrator:plugin:{plugin}")


# Held for a transaction by whoever changes objects plugins share: grants on the `migrator`
# schema, its history function and progress table, and declared extensions in `public`. Two
# `--jobs` workers doing either at once make PostgreSQL fail one ("tuple concurrently
# updated"; a duplicate key in pg_extension despite IF NOT EXISTS).
SHARED_OBJECTS_KEY = advisory_key("migrator:shared-objects")


def key_parts(key: int) -> tuple[int, int]:
    """(classid, objid) of a bigint advisory lock key, as pg_locks shows it."""
    unsigned = key & 0xFFFFFFFFFFFFFFFF
    return unsigned >> 32, unsigned & 0xFFFFFFFF


@dataclass(frozen=True, slots=True)
class Holder:
    pid: int
    application_name: str
    host: str | None
    since: str | None

    def as_event(self) -> dict[str, Any]:
        return {"holder_pid": self.pid, "holder_application_name": self.application_name,
                "holder_host": self.host, "holder_since": self.since}


def lock_holder(conn: psycopg.Connection[Any], key: int) -> Holder | None:
    """Who holds the advisory lock `key`, from pg_locks and pg_stat_activity."""
    row = conn.execute(
        "SELECT a.pid, coalesce(a.application_name, ''), host(a.client_addr), "
        "a.backend_start::text FROM pg_catalog.pg_locks l "
        "JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid "
        "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 "
        "AND l.classid::bigint = %s AND l.objid::bigint = %s AND l.database = "
        "(SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())",
        key_parts(key)).fetchone()
    if row is None:
        return None
    pid, app, host, since = row
    return Holder(pid=pid, application_name=app, host=host, since=since)


def acquire(
    conn: psycopg.Connection[Any], *, plugin: str, wait: float, log: Any,
    should_stop: Callable[[], bool] = lambda: False,
    sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic,
    rng: random.Random | None = None,
) -> None:
    """Take `plugin`'s session lock on the autocommit connection `conn`, polling with jitter
    (between polls `conn` holds no transaction, so a waiter cannot deadlock with a peer's
    `CREATE INDEX CONCURRENTLY`).

    Logs the holder at the first wait and every few seconds; raises LockWaitTimeout after
    `wait` seconds and Interrupted when `should_stop()` turns true while waiting.
    """
    key = plugin_key(plugin)
    draw = rng or random.Random()
    started = clock()
    next_report = started
    delay = 0.05
    while True:
        row = conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
        if row and row[0]:
            waited = clock() - started
            log.info("lock.acquired", plugin=plugin, waited_ms=int(waited * 1000))
            return
        now = clock()
        if should_stop():
            raise Interrupted(f"interrupted while waiting for plugin {plugin!r}'s lock; "
                              "nothing was changed, rerun to continue")
        if now - started >= wait:
            holder = lock_holder(conn, key)
            who = (f"pid {holder.pid} ({holder.application_name or 'no application_name'}"
                   f"{', ' + holder.host if holder.host else ''})") if holder else "another runner"
            raise LockWaitTimeout(
                f"plugin {plugin!r}: gave up after {wait:.0f}s waiting for its migration lock, "
                f"held by {who}; let that run finish, or raise --lock-wait", plugin=plugin)
        if now >= next_report:
            holder = lock_holder(conn, key)
            log.info("lock.waiting", plugin=plugin, waited_s=round(now - started, 1),
                     **(holder.as_event() if holder else {}))
            next_report = now + REPORT_EVERY
        sleep(min(draw.uniform(delay / 2, delay), max(wait - (now - started), 0.01)))
        delay = min(delay * 2, 1.0)


def release(conn: psycopg.Connection[Any], *, plugin: str) -> None:
    conn.execute("SELECT pg_advisory_unlock(%s)", (plugin_key(plugin),))


@dataclass(frozen=True, slots=True)
class Blocker:
    """A session holding locks on a plugin's tables while its schema change waited."""

    pid: int
    application_name: str
    state: str
    transaction_age_s: float | None
    query: str

    def describe(self) -> str:
        age = f"{self.transaction_age_s:.0f}s" if self.transaction_age_s is not None else "?"
        return (f"pid {self.pid} ({self.application_name or 'no application_name'}, "
                f"{self.state}, transaction open {age}: {self.query[:120]!r})")


def blocking_sessions(
    conn: psycopg.Connection[Any], *, schemas: list[str], exclude_pids: list[int]
) -> list[Blocker]:
    """Other sessions holding locks on tables in `schemas`, oldest transaction first."""
    rows = conn.execute(
        "SELECT a.pid, coalesce(a.application_name, ''), coalesce(a.state, ''), "
        "extract(epoch FROM now() - a.xact_start)::float8, coalesce(a.query, '') "
        "FROM pg_catalog.pg_stat_activity a "
        "WHERE a.pid <> pg_backend_pid() AND a.pid <> ALL(%s::int[]) "
        "AND a.datname = current_database() AND EXISTS ("
        "  SELECT 1 FROM pg_catalog.pg_locks l "
        "  JOIN pg_catalog.pg_class c ON c.oid = l.relation "
        "  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
        "  WHERE l.pid = a.pid AND l.granted AND n.nspname = ANY(%s::text[])) "
        "ORDER BY a.xact_start NULLS LAST LIMIT 5",
        (exclude_pids, schemas)).fetchall()
    return [Blocker(pid=r[0], application_name=r[1], state=r[2], transaction_age_s=r[3],
                    query=" ".join(r[4].split())) for r in rows]
