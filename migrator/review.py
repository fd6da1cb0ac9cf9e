"""`--dry-run`: the plan and the SQL of exactly the pending revisions, for a reviewer.

The current revisions are read from the real database in a READ ONLY transaction (every
transaction of the session is READ ONLY, so nothing can be created, not even the `migrator`
schema); the pending revisions are rendered offline (`sql_output`), and each statement is
annotated with the locks it takes (`sql_scan`) and the locked tables' row estimates from the
catalog (`pg_class.reltuples`), so the risky statement stands out. The result, `Review`, is data:
`as_dict()` (the documented JSON), `format_text()` and `format_markdown()` render it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg

from migrator import connections, db, sql_scan
from migrator.config import Settings
from migrator.plan import Plan, PluginPlan
from migrator.sql_output import (
    BACKFILL,
    UNRENDERABLE,
    RenderedPlugin,
    RenderedRevision,
    Statement,
    render_downgrade,
    render_upgrade,
)
from migrator.sql_tokens import Name

StatementKey = tuple[str, str, int]  # plugin, revision, index in the revision's statements


@contextmanager
def read_only(settings: Settings) -> Iterator[psycopg.Connection[Any]]:
    """A connection whose every transaction is READ ONLY; rolled back and closed after."""
    conn = connections.connect(db.resolve_url(settings), timeout=settings.connect_timeout,
                               autocommit=False)
    try:
        conn.read_only = True
        yield conn
    except psycopg.Error as exc:
        raise db.database_error(exc) from exc
    finally:
        if not conn.closed:
            conn.rollback()
            conn.close()


@dataclass(frozen=True, slots=True)
class LockNote:
    """A lock a statement takes, on a table as the catalog knows it."""

    mode: str
    table: str  # schema.table (an index's table)
    exists: bool
    estimated_rows: int | None  # None: a new table, or never analyzed
    index: str | None = None  # the lock is taken through this index

    @property
    def blocks(self) -> str:
        return sql_scan.blocks(self.mode)

    @property
    def risky(self) -> bool:
        return self.exists and self.blocks != "allows reads and writes"

    def describe(self) -> str:
        via = f" (through index {self.index})" if self.index else ""
        if not self.exists:
            return f"{self.mode} on {self.table}{via}: {self.rows_text}"
        return f"{self.mode} on {self.table}{via}: {self.rows_text}, {self.blocks}"

    @property
    def rows_text(self) -> str:
        if not self.exists:
            return "new table"
        if self.estimated_rows is None:
            return "rows unknown (never analyzed)"
        return f"~{self.estimated_rows:,} rows"

    def as_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "table": self.table, "index": self.index,
                "exists": self.exists, "estimated_rows": self.estimated_rows,
                "blocks": self.blocks}


@dataclass(frozen=True, slots=True)
class Note:
    verb: str
    known: bool
    locks: tuple[LockNote, ...]
    backfill_rows: int | None = None
    backfill_table_exists: bool = True


@dataclass(frozen=True, slots=True)
class Review:
    command: str  # upgrade | downgrade
    plan: Plan
    rendered: tuple[RenderedPlugin, ...]  # the plugins with something to do
    notes: Mapping[StatementKey, Note]

    def note(self, plugin: RenderedPlugin, revision: RenderedRevision, index: int) -> Note | None:
        return self.notes.get((plugin.plugin.name, revision.revision, index))

    @property
    def pending_revisions(self) -> int:
        return sum(len(p.revisions) for p in self.rendered)

    def as_dict(self) -> dict[str, Any]:
        """The documented JSON: per plugin from → to and each pending revision's statements."""
        by_name = {p.plugin.name: p for p in self.rendered}
        plugins = []
        for item in self.plan.plugins:
            rendered = by_name.get(item.name)
            plugins.append({
                "name": item.name, "schema": item.plugin.schema, "state": item.state,
                "from": item.current_label,
                "to": (rendered.end_label if rendered.end else None) if rendered
                else item.current_label,
                "revisions": [self._revision(rendered, r) for r in rendered.revisions]
                if rendered else []})
        return {"command": self.command, "dry_run": True,
                "pending_revisions": self.pending_revisions, "plugins": plugins}

    def _revision(self, plugin: RenderedPlugin, revision: RenderedRevision) -> dict[str, Any]:
        statements = []
        for index, statement in enumerate(revision.statements):
            if not statement.own:
                continue
            note = self.note(plugin, revision, index)
            entry: dict[str, Any] = {
                "sql": statement.sql, "kind": statement.kind,
                "in_transaction": statement.in_transaction,
                "verb": note.verb if note else None,
                "locks": [lock.as_dict() for lock in note.locks] if note else []}
            if statement.backfill is not None:
                entry["backfill"] = {**statement.backfill,
                                     "exists": note.backfill_table_exists if note else None,
                                     "estimated_rows": note.backfill_rows if note else None}
            statements.append(entry)
        return {"revision": revision.revision, "file": revision.file, "path": revision.path,
                "message": revision.message, "direction": plugin.direction,
                "transaction": revision.transaction, "statements": statements}


# -- building -----------------------------------------------------------------------------------


def review_upgrade(conn: psycopg.Connection[Any], plan: Plan, *, lock_timeout: float) -> Review:
    rendered = tuple(render_upgrade(item, lock_timeout=lock_timeout) for item in plan.pending)
    return Review("upgrade", plan, rendered, _notes(conn, rendered))


def review_downgrade(conn: psycopg.Connection[Any], reverts: Sequence[tuple[PluginPlan, str]],
                     *, lock_timeout: float) -> Review:
    """Each (plugin, destination) revert in order (a `--cascade`'s dependents first)."""
    rendered = tuple(render_downgrade(item.plugin, start=item.current, destination=destination,
                                      lock_timeout=lock_timeout)
                     for item, destination in reverts)
    return Review("downgrade", Plan(tuple(item for item, _ in reverts)),
                  tuple(r for r in rendered if r.revisions), _notes(conn, rendered))


def _notes(conn: psycopg.Connection[Any], rendered: Sequence[RenderedPlugin]
           ) -> dict[StatementKey, Note]:
    analyses: dict[StatementKey, tuple[RenderedPlugin, Statement, sql_scan.Analysis]] = {}
    wanted: set[tuple[str, str]] = set()
    for plugin in rendered:
        for revision in plugin.revisions:
            for index, statement in enumerate(revision.statements):
                if not statement.own:
                    continue
                if statement.kind in (BACKFILL, UNRENDERABLE):
                    analysis = sql_scan.Analysis(verb=statement.kind.upper(), known=True)
                else:
                    analysis = sql_scan.analyze(statement.sql)
                analyses[(plugin.plugin.name, revision.revision, index)] = (
                    plugin, statement, analysis)
                names = [lock.relation for lock in analysis.locks]
                if statement.backfill is not None:
                    table = str(statement.backfill["table"]).split(".")
                    names.append(Name(table[0] if len(table) > 1 else None, table[-1]))
                for name in names:
                    wanted.update(_candidates(name, plugin.plugin.schema))
    catalog = _catalog(conn, wanted)
    notes: dict[StatementKey, Note] = {}
    created: set[str] = set()  # tables created by earlier statements of this review
    for key, (plugin, statement, analysis) in analyses.items():
        schema = plugin.plugin.schema
        locks = []
        for lock in analysis.locks:
            locks.append(_lock_note(lock, schema, catalog, created))
            if lock.new:
                created.add(locks[-1].table)
        rows, exists = None, True
        if statement.backfill is not None:
            table = str(statement.backfill["table"]).split(".")
            found = _lookup(Name(table[0] if len(table) > 1 else None, table[-1]),
                            schema, catalog)
            rows, exists = (found[1], found[0] not in created) if found else (None, False)
        notes[key] = Note(verb=analysis.verb, known=analysis.known, locks=tuple(locks),
                          backfill_rows=rows, backfill_table_exists=exists)
    return notes


def _candidates(name: Name, schema: str) -> list[tuple[str, str]]:
    """Where an unqualified name resolves while the plugin's revisions run (search_path)."""
    if name.schema:
        return [(name.schema, name.name)]
    return [(schema, name.name), ("public", name.name)]


CatalogRow = tuple[str, int | None, str | None, str | None, int | None]


def _catalog(conn: psycopg.Connection[Any], wanted: set[tuple[str, str]]
             ) -> dict[tuple[str, str], CatalogRow]:
    """(schema, name) → relkind, row estimate, and for an index its table and that's estimate."""
    if not wanted:
        return {}
    pairs = sorted(wanted)
    rows = conn.execute(
        "SELECT q.schema_name, q.rel_name, c.relkind::text, "
        "CASE WHEN c.reltuples < 0 THEN NULL ELSE c.reltuples::bigint END, "
        "tn.nspname::text, t.relname::text, "
        "CASE WHEN t.reltuples < 0 THEN NULL ELSE t.reltuples::bigint END "
        "FROM unnest(%s::text[], %s::text[]) AS q(schema_name, rel_name) "
        "JOIN pg_catalog.pg_namespace n ON n.nspname = q.schema_name "
        "JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = q.rel_name "
        "LEFT JOIN pg_catalog.pg_index i ON i.indexrelid = c.oid "
        "LEFT JOIN pg_catalog.pg_class t ON t.oid = i.indrelid "
        "LEFT JOIN pg_catalog.pg_namespace tn ON tn.oid = t.relnamespace",
        ([p[0] for p in pairs], [p[1] for p in pairs])).fetchall()
    return {(r[0], r[1]): (r[2], r[3], r[4], r[5], r[6]) for r in rows}


def _lookup(name: Name, schema: str, catalog: Mapping[tuple[str, str], CatalogRow]
            ) -> tuple[str, int | None, CatalogRow] | None:
    for candidate in _candidates(name, schema):
        if candidate in catalog:
            row = catalog[candidate]
            return f"{candidate[0]}.{candidate[1]}", row[1], row
    return None


def _lock_note(lock: sql_scan.Lock, schema: str, catalog: Mapping[tuple[str, str], CatalogRow],
               created: set[str]) -> LockNote:
    found = None if lock.new else _lookup(lock.relation, schema, catalog)
    if found is None:
        qualified = str(lock.relation) if lock.relation.schema else \
            f"{schema}.{lock.relation.name}"
        if lock.index:
            return LockNote(lock.mode, f"the table of index {qualified}", exists=False,
                            estimated_rows=None, index=qualified)
        return LockNote(lock.mode, qualified, exists=False, estimated_rows=None)
    qualified, rows, row = found
    relkind, _, table_schema, table_name, table_rows = row
    if relkind == "i" and table_schema and table_name:
        table = f"{table_schema}.{table_name}"
        return LockNote(lock.mode, table, exists=table not in created,
                        estimated_rows=table_rows, index=qualified)
    return LockNote(lock.mode, qualified, exists=qualified not in created, estimated_rows=rows)
