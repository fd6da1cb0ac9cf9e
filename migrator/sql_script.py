"""The psql-runnable script of `--sql` (and the text of `--dry-run`): a header, migrator's
records DDL, then each plugin's rendered revisions with its lock, stamps and history rows."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from migrator import __version__
from migrator.sql_output import (
    TRANSACTIONAL,
    UP,
    RenderedPlugin,
    RenderedRevision,
    Statement,
)
from migrator.sql_records import records_ddl

# Comment lines to put before a statement: (plugin, revision, index in its statements, statement).
Annotate = Callable[[RenderedPlugin, RenderedRevision, int, Statement], list[str]]

_RULE = "-- " + "=" * 77
_THIN = "-- " + "-" * 77


@dataclass(frozen=True, slots=True)
class ScriptHeader:
    command: str  # e.g. "migrator upgrade --sql"
    notes: tuple[str, ...] = field(default=())


def format_script(rendered: Sequence[RenderedPlugin], header: ScriptHeader, *,
                  annotate: Annotate | None = None, include_records: bool = True) -> str:
    """A psql-runnable script: a header, migrator's records DDL, then each plugin."""
    anything = any(p.revisions for p in rendered)
    lines = [f"-- migrator {__version__}: {header.command}",
             "-- " + _summary(rendered),
             *(f"-- {note}" for note in header.notes),
             *(["-- Run with: psql -X -v ON_ERROR_STOP=1 -f <this file>"] if anything else []),
             ""]
    if include_records and anything:
        lines += ["-- migrator's records (created once per database)", *records_ddl(), ""]
    for plugin in rendered:
        lines += _format_plugin(plugin, annotate)
    return "\n".join(lines).rstrip("\n") + "\n"


def _summary(rendered: Sequence[RenderedPlugin]) -> str:
    if not rendered:
        return "Nothing to do."
    parts = [f"{p.plugin.name} ({p.start_label} -> {p.end_label})" for p in rendered]
    return "Plugins, in dependency order: " + ", ".join(parts) + "."


def _format_plugin(rendered: RenderedPlugin, annotate: Annotate | None) -> list[str]:
    plugin = rendered.plugin
    count = len(rendered.revisions)
    lines = [_RULE,
             f"-- Plugin {plugin.name} (schema {plugin.schema}): {rendered.start_label} -> "
             f"{rendered.end_label}, {count} revision{'' if count == 1 else 's'} "
             f"{'to apply' if rendered.direction == UP else 'to revert'}",
             f"-- Depends on: {', '.join(plugin.depends_on) or 'nothing'}",
             *([f"-- Stops at revision {rendered.stops_at.revision}: it cannot be shown "
                "offline; apply the plugin with migrator"] if rendered.stops_at else []),
             _RULE]
    if not rendered.revisions:
        return [*lines, "-- Nothing to do.", ""]
    lines += ["-- The plugin's advisory lock (migrator holds it on a connection of its own)."]
    lines += [s.sql for s in rendered.setup]
    lines.append("")
    for revision in rendered.revisions:
        lines += [_THIN,
                  f"-- Revision {revision.revision}: {revision.message or '(no message)'}",
                  f"-- File: {revision.file}",
                  f"-- Direction: {'upgrade' if rendered.direction == UP else 'downgrade'}; "
                  f"transaction: {_transaction_text(revision)}",
                  _THIN]
        for index, statement in enumerate(revision.statements):
            if annotate is not None:
                lines += annotate(rendered, revision, index, statement)
            lines.append(statement.sql)
        lines.append("")
    lines += [s.sql for s in rendered.teardown]
    lines.append("")
    return lines


def _transaction_text(revision: RenderedRevision) -> str:
    if revision.unrenderable is not None:
        return "cannot be shown offline (below); the script stops there"
    if revision.transaction == TRANSACTIONAL:
        return "one transaction, with its version stamp and history row"
    outside = sum(1 for s in revision.own if not s.in_transaction)
    return (f"autocommit block ({outside} statement{'' if outside == 1 else 's'} outside a "
            "transaction, which must be safe to rerun); the version stamp commits after them")
