"""migrator's own statements in offline SQL: the lock and settings around a plugin, its
history rows (through `migrator.record_attempt`, as a run writes them) and the `migrator`
schema's DDL, all as text."""

from __future__ import annotations

import functools
from typing import Any

from psycopg import sql

from migrator import __version__, locking, records
from migrator.discovery import Plugin


@functools.cache
def _dialect() -> Any:
    from sqlalchemy.dialects.postgresql.base import PGDialect

    return PGDialect()  # type: ignore[no-untyped-call]  # SQLAlchemy leaves it unannotated


def _quote(identifier: str) -> str:
    return str(_dialect().identifier_preparer.quote(identifier))


def setup_sql(plugin: Plugin, lock_timeout: float) -> list[str]:
    """The advisory lock migrator holds, then its session settings and the plugin's schema,
    version table and declared extensions (what the run creates before the revisions)."""
    from migrator.db import plugin_setup, session_settings

    statements = [*session_settings(plugin.schema, lock_timeout=lock_timeout),
                  *plugin_setup(plugin)]
    return [f"SELECT pg_advisory_lock({locking.plugin_key(plugin.name)});",
            *(statement.as_string(None) + ";" for statement in statements)]


def history_insert(plugin: Plugin, revision: str, direction: str, checksum: str | None) -> str:
    """The history row of one revision, through `migrator.record_attempt` (the one definition
    of a history row, as a run records it); the times are the script's own."""

    values = [sql.Literal(v) for v in (plugin.name, plugin.schema, revision, direction,
                                       checksum)]
    return sql.SQL(
        "SELECT migrator.record_attempt({}, {}, {}, {}, {}, now(), clock_timestamp(), "
        "'sql script (' || session_user || ')', {}, 'applied', NULL, NULL);").format(
            *values, sql.Literal(__version__)).as_string()


def records_ddl() -> list[str]:
    """The `migrator` schema and its tables, as `records.ensure_schema` creates them."""
    return [_dedent(statement) + ";" for statement in records.ddl()]


def _dedent(statement: str) -> str:
    lines = statement.splitlines()
    return "\n".join([lines[0], *("    " + line.strip() for line in lines[1:-1]),
                      *([lines[-1].strip()] if len(lines) > 1 else [])])
