"""All SQL on the `migrator` schema: the history of every attempt, backfill progress, and the
plugin roles of `--isolate-roles`.

The history row has one definition: the function `migrator.record_attempt(...)`. Every
attempt is recorded through it: by migrator's login role, by a plugin's sandboxed session
(`SECURITY DEFINER`, it records only for the calling plugin's own role), and by the offline
`--sql` script.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import psycopg

from migrator import __version__
from migrator.locking import advisory_key

SCHEMA = "migrator"
RECORDS_VERSION = 2  # bump with a new statement at the end of _DDL
_BOOTSTRAP_LOCK = advisory_key("migrator:bootstrap")


class Direction(StrEnum):
    UP = "up"
    DOWN = "down"
    STAMP = "stamp"
    REPAIR = "repair"


class AttemptOutcome(StrEnum):
    APPLIED = "applied"
    FAILED = "failed"


class BackfillStatus(StrEnum):
    RUNNING = "running"
    PAUSED = "paused"  # interrupted (a signal, a lost connection): the next run resumes
    DONE = "done"
    FAILED = "failed"


# Each statement is idempotent, so a database at any earlier records version is brought up to
# date by running them all (under the bootstrap lock, once).
_DDL = (
    "CREATE SCHEMA IF NOT EXISTS migrator",
    """CREATE TABLE IF NOT EXISTS migrator.history (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        plugin text NOT NULL,
        schema_name text NOT NULL,
        revision text NOT NULL,
        direction text NOT NULL,
        checksum text,
        started_at timestamptz NOT NULL,
        finished_at timestamptz NOT NULL,
        duration_ms integer NOT NULL,
        applied_by text NOT NULL,
        migrator_version text NOT NULL,
        outcome text NOT NULL CHECK (outcome IN ('applied', 'failed')),
        error text
    )""",
    "CREATE INDEX IF NOT EXISTS history_plugin_idx ON migrator.history (plugin, id)",
    """CREATE TABLE IF NOT EXISTS migrator.backfill_progress (
        plugin text NOT NULL,
        revision text NOT NULL,
        name text NOT NULL,
        last_key jsonb,
        upper_key jsonb,
        rows_done bigint NOT NULL DEFAULT 0,
        batches_done bigint NOT NULL DEFAULT 0,
        status text NOT NULL,
        started_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (plugin, revision, name)
    )""",
    # -- records version 2 --
    "ALTER TABLE migrator.history ADD COLUMN IF NOT EXISTS atomic boolean",
    "ALTER TABLE migrator.history DROP CONSTRAINT IF EXISTS history_direction_check",
    "ALTER TABLE migrator.history ADD CONSTRAINT history_direction_check "
    "CHECK (direction IN ('up', 'down', 'stamp', 'repair'))",
    "ALTER TABLE migrator.backfill_progress "
    "DROP CONSTRAINT IF EXISTS backfill_progress_status_check",
    "ALTER TABLE migrator.backfill_progress ADD CONSTRAINT backfill_progress_status_check "
    "CHECK (status IN ('running', 'paused', 'done', 'failed'))",
    "ALTER TABLE migrator.backfill_progress ADD COLUMN IF NOT EXISTS total_rows bigint",
    """CREATE TABLE IF NOT EXISTS migrator.plugin_roles (
        plugin text PRIMARY KEY,
        schema_name text NOT NULL,
        role_name text NOT NULL
    )""",
    """CREATE OR REPLACE FUNCTION migrator.record_attempt(
        p_plugin text, p_schema text, p_revision text, p_direction text, p_checksum text,
        p_started_at timestamptz, p_finished_at timestamptz, p_applied_by text,
        p_migrator_version text, p_outcome text, p_error text, p_atomic boolean)
    RETURNS void LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $$
    BEGIN
        -- migrator's login role records for any plugin; a plugin's sandboxed role only for
        -- its own plugin.
        IF NOT pg_catalog.pg_has_role(session_user, current_user, 'MEMBER') AND NOT EXISTS (
                SELECT FROM migrator.plugin_roles r
                WHERE r.plugin = p_plugin AND r.role_name = session_user::text) THEN
            RAISE EXCEPTION 'role % may not record history for plugin %',
                session_user, p_plugin USING ERRCODE = 'insufficient_privilege';
        END IF;
        INSERT INTO migrator.history (plugin, schema_name, revision, direction, checksum,
            started_at, finished_at, duration_ms, applied_by, migrator_version, outcome,
            error, atomic)
        VALUES (p_plugin, p_schema, p_revision, p_direction, p_checksum, p_started_at,
            p_finished_at,
            pg_catalog.round(extract(epoch FROM p_finished_at - p_started_at) * 1000)::integer,
            p_applied_by, p_migrator_version, p_outcome, p_error, p_atomic);
    END $$""",
    "REVOKE ALL ON FUNCTION migrator.record_attempt(text, text, text, text, text, timestamptz, "
    "timestamptz, text, text, text, text, boolean) FROM PUBLIC",
    """CREATE TABLE IF NOT EXISTS migrator.records_version (
        singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
        version integer NOT NULL
    )""",
    "INSERT INTO migrator.records_version (version) VALUES (2) "
    "ON CONFLICT (singleton) DO UPDATE SET version = EXCLUDED.version",
)

RECORD_ATTEMPT = (
    "SELECT migrator.record_attempt(%(plugin)s, %(schema)s, %(revision)s, %(direction)s, "
    "%(checksum)s, %(started_at)s, %(finished_at)s, %(applied_by)s, %(migrator_version)s, "
    "%(outcome)s, %(error)s, %(atomic)s)"
)


def ddl() -> Sequence[str]:
    """The statements that create (or bring up to date) the `migrator` schema."""
    return _DDL


def ensure_schema(conn: psycopg.Connection[Any]) -> None:
    """Create or update the `migrator` schema once; concurrent runners serialise here, and
    those that waited find it done (no DDL while peers write their records).
    `conn` must be in autocommit mode (this makes its own transaction)."""
    if _records_version(conn) >= RECORDS_VERSION:
        return
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_BOOTSTRAP_LOCK,))
        if _records_version(conn) >= RECORDS_VERSION:
            return
        for statement in _DDL:
            conn.execute(statement)


def _records_version(conn: psycopg.Connection[Any]) -> int:
    if not _exists(conn, "records_version"):
        return 0
    row = conn.execute("SELECT max(version) FROM migrator.records_version").fetchone()
    return int(row[0]) if row and row[0] is not None else 0


@dataclass(frozen=True, slots=True)
class Attempt:
    """One attempt to apply, revert, stamp or repair a revision: a `migrator.history` row."""

    plugin: str
    schema: str
    revision: str
    direction: Direction
    checksum: str | None
    started_at: datetime
    finished_at: datetime
    applied_by: str
    outcome: AttemptOutcome
    error: str | None = None
    atomic: bool | None = None  # None: not a revision's run (a stamp, a repair)

    def params(self) -> dict[str, Any]:
        return {
            "plugin": self.plugin, "schema": self.schema, "revision": self.revision,
            "direction": str(self.direction), "checksum": self.checksum,
            "started_at": self.started_at, "finished_at": self.finished_at,
            "applied_by": self.applied_by, "migrator_version": __version__,
            "outcome": str(self.outcome), "error": self.error, "atomic": self.atomic,
        }


# The history row of a revision whose atomicity is decided in the same round trip: it ran
# atomically when the transaction it started in is the one still open.
_RECORD_JUDGED = RECORD_ATTEMPT.replace(
    "%(atomic)s", "pg_catalog.pg_xact_status(%(first_xid)s::xid8) = 'in progress'")


def record(conn: psycopg.Connection[Any], attempt: Attempt, *,
           first_xid: str | None = None) -> None:
    """Record the attempt on `conn`, inside whatever transaction `conn` is in; with
    `first_xid`, `atomic` says whether that transaction is still the one in progress."""
    if first_xid is None:
        conn.execute(RECORD_ATTEMPT, attempt.params())
    else:
        conn.execute(_RECORD_JUDGED, {**attempt.params(), "first_xid": first_xid})


def forget_backfills(conn: psycopg.Connection[Any], plugin: str, revision: str) -> None:
    """Drop the checkpoints of a revision's backfills, in the transaction that reverts it: a
    later upgrade runs them again instead of finding them done."""
    conn.execute("DELETE FROM migrator.backfill_progress WHERE plugin = %s AND revision = %s",
                 (plugin, revision))


def history(conn: psycopg.Connection[Any], plugin: str, limit: int = 1000) -> list[dict[str, Any]]:
    """The newest `limit` attempts for `plugin`, oldest first; empty before the first run."""
    if not _exists(conn, "history"):
        return []
    from psycopg.rows import dict_row

    atomic = "atomic" if _has_atomic(conn) else "NULL::boolean AS atomic"
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "SELECT * FROM (SELECT id, plugin, schema_name, revision, direction, checksum, "
            "started_at, finished_at, duration_ms, applied_by, migrator_version, outcome, error, "
            f"{atomic} FROM migrator.history WHERE plugin = %s ORDER BY id DESC LIMIT %s) h "
            "ORDER BY id", (plugin, limit)).fetchall()
    return rows


def applied_checksums(conn: psycopg.Connection[Any]) -> dict[str, dict[str, tuple[str, str]]]:
    """plugin → revision → (checksum, when) of its latest applied up, stamp or repair row."""
    if not _exists(conn, "history"):
        return {}
    rows = conn.execute(
        "SELECT DISTINCT ON (plugin, revision) plugin, revision, checksum, "
        "to_char(finished_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') "
        "FROM migrator.history WHERE outcome = 'applied' "
        "AND direction IN ('up', 'stamp', 'repair') "
        "ORDER BY plugin, revision, id DESC").fetchall()
    found: dict[str, dict[str, tuple[str, str]]] = {}
    for plugin, revision, checksum, when in rows:
        if checksum:
            found.setdefault(plugin, {})[revision] = (checksum, when)
    return found


def known_plugins(conn: psycopg.Connection[Any]) -> dict[str, str]:
    """plugin → schema for every plugin migrator has ever touched in this database."""
    if not _exists(conn, "history"):
        return {}
    rows = conn.execute(
        "SELECT DISTINCT ON (plugin) plugin, schema_name FROM migrator.history "
        "ORDER BY plugin, id DESC").fetchall()
    return {plugin: schema for plugin, schema in rows}


@dataclass(frozen=True, slots=True)
class UnfinishedBackfill:
    plugin: str
    revision: str
    name: str
    status: BackfillStatus
    rows_done: int
    batches_done: int
    total_rows: int | None
    updated_at: str

    @property
    def percent(self) -> float | None:
        if not self.total_rows:
            return None
        return min(100.0, 100.0 * self.rows_done / self.total_rows)

    def as_dict(self) -> dict[str, Any]:
        return {"plugin": self.plugin, "revision": self.revision, "name": self.name,
                "status": str(self.status), "rows_done": self.rows_done,
                "batches_done": self.batches_done, "total_rows": self.total_rows,
                "percent": None if self.percent is None else round(self.percent, 1),
                "updated_at": self.updated_at}


def unfinished_backfills(conn: psycopg.Connection[Any], plugins: Sequence[str]
                         ) -> tuple[UnfinishedBackfill, ...]:
    """Backfills of `plugins` that are not done (running, paused or failed)."""
    if not _exists(conn, "backfill_progress"):
        return ()
    total = "total_rows" if _column_exists(conn, "backfill_progress", "total_rows") \
        else "NULL::bigint"
    rows = conn.execute(
        f"SELECT plugin, revision, name, status, rows_done, batches_done, {total}, "
        "updated_at::text FROM migrator.backfill_progress "
        "WHERE status <> 'done' AND plugin = ANY(%s) ORDER BY plugin, revision, name",
        (list(plugins),)).fetchall()
    return tuple(UnfinishedBackfill(r[0], r[1], r[2], BackfillStatus(r[3]), r[4], r[5], r[6],
                                    r[7]) for r in rows)


def _exists(conn: psycopg.Connection[Any], table: str) -> bool:
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (f"migrator.{table}",)).fetchone()
    return bool(row and row[0])


def _column_exists(conn: psycopg.Connection[Any], table: str, column: str) -> bool:
    row = conn.execute(
        "SELECT EXISTS (SELECT FROM pg_catalog.pg_attribute WHERE attrelid = to_regclass(%s) "
        "AND attname = %s AND NOT attisdropped)", (f"migrator.{table}", column)).fetchone()
    return bool(row and row[0])


def _has_atomic(conn: psycopg.Connection[Any]) -> bool:
    return _column_exists(conn, "history", "atomic")
