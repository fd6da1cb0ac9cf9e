"""The `migrator` schema: the history of every attempt, and backfill progress."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg

from migrator import __version__
from migrator.locking import advisory_key

SCHEMA = "migrator"
_BOOTSTRAP_LOCK = advisory_key("migrator:bootstrap")

_DDL = (
    "CREATE SCHEMA IF NOT EXISTS migrator",
    """CREATE TABLE IF NOT EXISTS migrator.history (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        plugin text NOT NULL,
        schema_name text NOT NULL,
        revision text NOT NULL,
        direction text NOT NULL CHECK (direction IN ('up', 'down', 'stamp')),
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
        status text NOT NULL CHECK (status IN ('running', 'done', 'failed')),
        started_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (plugin, revision, name)
    )""",
)

_INSERT = (
    "INSERT INTO migrator.history (plugin, schema_name, revision, direction, checksum, "
    "started_at, finished_at, duration_ms, applied_by, migrator_version, outcome, error) "
    "VALUES (%(plugin)s, %(schema)s, %(revision)s, %(direction)s, %(checksum)s, %(started_at)s, "
    "%(finished_at)s, %(duration_ms)s, %(applied_by)s, %(migrator_version)s, %(outcome)s, "
    "%(error)s)"
)


def ensure_schema(conn: psycopg.Connection[Any]) -> None:
    """Create the `migrator` schema and its tables once; concurrent runners serialise here."""
    exists = conn.execute(
        "SELECT to_regclass('migrator.history') IS NOT NULL "
        "AND to_regclass('migrator.backfill_progress') IS NOT NULL").fetchone()
    if exists and exists[0]:
        return
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_BOOTSTRAP_LOCK,))
        for statement in _DDL:
            conn.execute(statement)


def checksum(path: Path) -> str:
    """Lowercase hex sha256 of a revision file, as stored in `migrator.history`."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass(frozen=True, slots=True)
class Attempt:
    """One attempt to apply, revert or stamp a revision, as a `migrator.history` row."""

    plugin: str
    schema: str
    revision: str
    direction: str
    checksum: str | None
    started_at: datetime
    finished_at: datetime
    applied_by: str
    outcome: str
    error: str | None = None

    def params(self) -> dict[str, Any]:
        return {
            "plugin": self.plugin, "schema": self.schema, "revision": self.revision,
            "direction": self.direction, "checksum": self.checksum,
            "started_at": self.started_at, "finished_at": self.finished_at,
            "duration_ms": int((self.finished_at - self.started_at).total_seconds() * 1000),
            "applied_by": self.applied_by, "migrator_version": __version__,
            "outcome": self.outcome, "error": self.error,
        }


def record(conn: psycopg.Connection[Any], attempt: Attempt) -> None:
    """Insert the attempt on `conn`, inside whatever transaction `conn` is in."""
    conn.execute(_INSERT, attempt.params())


def forget_backfills(conn: psycopg.Connection[Any], plugin: str, revision: str) -> None:
    """Drop the checkpoints of a revision's backfills, in the transaction that reverts it: a
    later upgrade runs them again instead of finding them done."""
    conn.execute("DELETE FROM migrator.backfill_progress WHERE plugin = %s AND revision = %s",
                 (plugin, revision))


def history(conn: psycopg.Connection[Any], plugin: str, limit: int = 1000) -> list[dict[str, Any]]:
    """The newest `limit` attempts for `plugin`, oldest first; empty before the first run."""
    if not _exists(conn):
        return []
    from psycopg.rows import dict_row

    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            "SELECT * FROM (SELECT id, plugin, schema_name, revision, direction, checksum, "
            "started_at, finished_at, duration_ms, applied_by, migrator_version, outcome, error "
            "FROM migrator.history WHERE plugin = %s ORDER BY id DESC LIMIT %s) h ORDER BY id",
            (plugin, limit)).fetchall()
    return rows


def known_plugins(conn: psycopg.Connection[Any]) -> dict[str, str]:
    """plugin → schema for every plugin migrator has ever touched in this database."""
    if not _exists(conn):
        return {}
    rows = conn.execute(
        "SELECT DISTINCT ON (plugin) plugin, schema_name FROM migrator.history "
        "ORDER BY plugin, id DESC").fetchall()
    return {plugin: schema for plugin, schema in rows}


def _exists(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute("SELECT to_regclass('migrator.history') IS NOT NULL").fetchone()
    return bool(row and row[0])
