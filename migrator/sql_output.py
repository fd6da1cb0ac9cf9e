"""Offline SQL: what `upgrade` and `downgrade` run, rendered without a database.

Alembic's offline mode (a `MigrationContext` with `as_sql=True`) renders each revision's
statements and version stamps; migrator puts around them what it really runs: the plugin's
advisory lock, `lock_timeout`, `CREATE SCHEMA IF NOT EXISTS`, `search_path`, the version table
DDL, one transaction per revision with its `migrator.history` row, and `synchronous_commit` back
on for the last commit (runner.py and records.py are the originals). The result is data
(`RenderedPlugin`), which `format_script` turns into a psql-runnable script and which `--dry-run`
and `lint` annotate.

The output is byte-identical across runs and machines: no timestamps, no paths, stable order.
The history row's values that only exist when it runs are SQL expressions evaluated then:
`started_at = now()`, `finished_at = clock_timestamp()`, `applied_by = 'sql script (<role>)'`
(from `session_user`); the checksum is the revision file's sha256, as migrator records it.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from migrator import __version__, locking, records
from migrator.discovery import Plugin
from migrator.plan import PluginPlan

if TYPE_CHECKING:
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

UP, DOWN = "up", "down"

# What a statement is, in a rendered plugin.
SETUP = "setup"  # migrator's own, around the revisions
BEGIN = "begin"
COMMIT = "commit"
REVISION = "revision"  # the revision's own statement
BACKFILL = "backfill"  # migrator.backfill(), rendered as a commented batch statement
STAMP = "stamp"  # the version table row
HISTORY = "history"  # the migrator.history row
TRANSACTIONAL = "transactional"
AUTOCOMMIT_BLOCK = "autocommit_block"


@dataclass(frozen=True, slots=True)
class Statement:
    sql: str  # ends with ";" (a backfill: comment lines and one statement)
    kind: str
    in_transaction: bool
    backfill: Mapping[str, Any] | None = None  # a backfill's specification

    @property
    def own(self) -> bool:
        """Written by the revision (as opposed to migrator's stamp, history row, BEGIN...)."""
        return self.kind in (REVISION, BACKFILL)


@dataclass(frozen=True, slots=True)
class RenderedRevision:
    revision: str
    path: str  # as discovered
    file: str  # the file name alone
    message: str
    statements: tuple[Statement, ...]

    @property
    def own(self) -> tuple[Statement, ...]:
        return tuple(s for s in self.statements if s.own)

    @property
    def transaction(self) -> str:
        """`transactional`, or `autocommit_block` when some statement runs outside the
        revision's transaction (Alembic's `autocommit_block`, or a backfill)."""
        return TRANSACTIONAL if all(s.in_transaction for s in self.own) else AUTOCOMMIT_BLOCK


@dataclass(frozen=True, slots=True)
class RenderedPlugin:
    plugin: Plugin
    direction: str
    start: tuple[str, ...]  # the revisions it starts from (empty: base)
    end: tuple[str, ...]  # where it ends (empty: base)
    setup: tuple[Statement, ...]
    revisions: tuple[RenderedRevision, ...]
    teardown: tuple[Statement, ...]

    @property
    def start_label(self) -> str:
        return ",".join(self.start) or "base"

    @property
    def end_label(self) -> str:
        return ",".join(self.end) or "base"


# -- rendering --------------------------------------------------------------------------------


def render_upgrade(item: PluginPlan, *, lock_timeout: float,
                   script: ScriptDirectory | None = None) -> RenderedPlugin:
    """The SQL of `item`'s pending revisions, from `item.current` to `item.target`."""
    from migrator.scripts import load_script
    from migrator.steps import upgrade_walk

    script = script or load_script(item.plugin)
    steps = upgrade_walk(script, item.target, item.current) if item.pending else []
    return _render(item.plugin, UP, item.current, steps, lock_timeout=lock_timeout)


def render_downgrade(plugin: Plugin, *, start: tuple[str, ...], destination: str,
                     lock_timeout: float, script: ScriptDirectory | None = None
                     ) -> RenderedPlugin:
    """The SQL that reverts `plugin` from `start` to `destination` (a revision, -N, base)."""
    from migrator.scripts import load_script

    script = script or load_script(plugin)
    from migrator.steps import downgrade_walk

    steps = downgrade_walk(script, destination, start) if start else []
    return _render(plugin, DOWN, start, steps, lock_timeout=lock_timeout)


def _render(plugin: Plugin, direction: str, start: tuple[str, ...], steps: list[Any], *,
            lock_timeout: float) -> RenderedPlugin:
    from alembic.operations import Operations
    from alembic.runtime.migration import MigrationContext

    from migrator.backfill_spec import RENDER_HOOK

    recorder = _Recorder(plugin, direction, start, [str(s.revision.revision) for s in steps])
    ctx = MigrationContext.configure(dialect_name="postgresql", opts={
        "as_sql": True,
        "output_buffer": _Discard(),
        "literal_binds": True,
        "transaction_per_migration": True,
        "version_table_schema": plugin.schema,
        "starting_rev": list(start) or None,
        "fn": lambda _heads, _ctx: recorder.steps(steps),
        "on_version_apply": [recorder.on_applied],
        RENDER_HOOK: recorder.on_backfill,
    })
    recorder.attach(ctx)
    with Operations.context(ctx):
        ctx.run_migrations()
    return RenderedPlugin(
        plugin=plugin, direction=direction, start=start, end=recorder.end,
        setup=tuple(_setup(plugin, lock_timeout)), revisions=tuple(recorder.revisions),
        teardown=(Statement(f"SELECT pg_advisory_unlock({locking.plugin_key(plugin.name)});",
                            SETUP, False),))


class _Discard:
    """Alembic's output buffer: every statement reaches `_Recorder` first, so nothing is left."""

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


class _Recorder:
    """Sits between Alembic's offline rendering and its output: sorts each chunk into a
    `Statement` of the revision being rendered, drops the version table DDL migrator creates
    beforehand, and adds the history row migrator writes in each revision's transaction."""

    def __init__(self, plugin: Plugin, direction: str, start: tuple[str, ...],
                 ids: list[str]) -> None:
        self.plugin, self.direction, self.ids = plugin, direction, ids
        self.end = start
        self.revisions: list[RenderedRevision] = []
        self.current: str | None = None
        self.statements: list[Statement] = []
        self.in_transaction = False
        self.kind: str | None = None
        self.pending_backfill: Mapping[str, Any] | None = None
        self.ctx: MigrationContext | None = None

    def attach(self, ctx: MigrationContext) -> None:
        self.ctx = ctx
        self._exec = ctx.impl._exec
        # Instance attributes shadow the methods: Alembic calls both through `ctx.impl`.
        ctx.impl._exec = self.exec_  # type: ignore[method-assign]  # the hook, see docstring
        ctx.impl.static_output = self.output  # type: ignore[method-assign]

    def steps(self, steps: list[Any]) -> Iterator[Any]:
        for step, revision in zip(steps, self.ids, strict=True):
            self._close()
            self.current = revision
            yield step
        self._close()

    def _close(self) -> None:
        if self.current is None:
            return
        found = self.plugin.revision(self.current)
        path = found.file if found else ""
        self.revisions.append(RenderedRevision(
            revision=self.current, path=path, file=found.filename if found else "",
            message=found.message if found else "", statements=tuple(self.statements)))
        self.current, self.statements = None, []

    def exec_(self, construct: Any, *args: Any, **kwargs: Any) -> Any:
        from sqlalchemy.schema import CreateTable

        assert self.ctx is not None
        version_table = self.ctx._version
        if isinstance(construct, CreateTable) and construct.element is version_table:
            return None  # migrator creates it (IF NOT EXISTS) before the first revision
        previous = self.kind
        if getattr(construct, "table", None) is version_table:
            self.kind = STAMP
        try:
            return self._exec(construct, *args, **kwargs)
        finally:
            self.kind = previous

    def output(self, text: str) -> None:
        text = text.strip()
        kind = self.kind
        if kind is None:
            if text == "BEGIN;":
                self.in_transaction, kind = True, BEGIN
            elif text == "COMMIT;":
                self.in_transaction, kind = False, COMMIT
            elif text.startswith("-- Running "):
                return  # Alembic's own marker; the script has migrator's headers instead
            else:
                kind = REVISION
        backfill = None
        if kind == REVISION and self.pending_backfill is not None:
            kind, backfill, self.pending_backfill = BACKFILL, self.pending_backfill, None
        in_transaction = self.in_transaction or kind == COMMIT
        self.statements.append(Statement(text, kind, in_transaction, backfill))

    def on_backfill(self, description: Mapping[str, Any]) -> None:
        self.pending_backfill = description

    def on_applied(self, *, ctx: Any, step: Any, heads: Any, run_args: Any) -> None:
        """Alembic callback after each version stamp: add the history row, as runner.py does."""
        self.end = tuple(sorted(heads))
        revision = self.current
        assert revision is not None
        from migrator.scripts import revision_checksum

        found = self.plugin.revision(revision)
        self.statements.append(Statement(
            _history_insert(self.plugin, revision, self.direction,
                            revision_checksum(self.plugin, revision) if found else None),
            HISTORY, True))
        if revision == self.ids[-1]:
            # runner.py: earlier commits skip the WAL flush, the last one waits for it.
            self.statements.append(Statement("SET LOCAL synchronous_commit TO on;", SETUP, True))


# -- migrator's own statements -----------------------------------------------------------------


@functools.cache
def _dialect() -> Any:
    from sqlalchemy.dialects.postgresql.base import PGDialect

    return PGDialect()  # type: ignore[no-untyped-call]  # SQLAlchemy leaves it unannotated


def _quote(identifier: str) -> str:
    return str(_dialect().identifier_preparer.quote(identifier))


def _setup(plugin: Plugin, lock_timeout: float) -> list[Statement]:
    """The advisory lock runner.py holds, then its `session_setup` statements."""
    from migrator.db import session_settings
    from migrator.runner import setup_statements

    statements = [*session_settings(plugin.schema, lock_timeout=lock_timeout),
                  *setup_statements(plugin)]
    return [Statement(f"SELECT pg_advisory_lock({locking.plugin_key(plugin.name)});", SETUP,
                      False),
            *(Statement(statement.as_string() + ";", SETUP, False) for statement in statements)]


def _history_insert(plugin: Plugin, revision: str, direction: str, checksum: str | None) -> str:
    """The history row of one revision, through `migrator.record_attempt` (the one definition
    of a history row, as a run records it); the times are the script's own."""
    from psycopg import sql

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
