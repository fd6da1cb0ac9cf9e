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

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from psycopg import sql

from migrator import locking
from migrator.discovery import Plugin
from migrator.plan import PluginPlan
from migrator.scripts import revision_checksum
from migrator.sql_offline import Guarded, OfflineBind, Unrenderable
from migrator.sql_records import history_insert, setup_sql

if TYPE_CHECKING:
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

UP, DOWN = "up", "down"

# What a statement is, in a rendered plugin.
SETUP = "setup"  # migrator's own, around the revisions
BEGIN = "begin"
COMMIT = "commit"
REVISION = "revision"  # the revision's own statement
BACKFILL = "backfill"  # migrator.backfill(), rendered as a DO block committing per batch
UNRENDERABLE = "unrenderable"  # a revision with no offline form: a comment and a stop
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
        return self.kind in (REVISION, BACKFILL, UNRENDERABLE)


@dataclass(frozen=True, slots=True)
class RenderedRevision:
    revision: str
    path: str  # as discovered
    file: str  # the file name alone
    message: str
    statements: tuple[Statement, ...]
    unrenderable: str | None = None  # why it cannot be shown offline ("reads a query's result")

    @property
    def own(self) -> tuple[Statement, ...]:
        return tuple(s for s in self.statements if s.own)

    @property
    def transaction(self) -> str:
        """`transactional`, or `autocommit_block` when some statement runs outside the
        revision's transaction (Alembic's `autocommit_block`, or a backfill), or
        `unrenderable`."""
        if self.unrenderable is not None:
            return UNRENDERABLE
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

    @property
    def stops_at(self) -> RenderedRevision | None:
        """The first revision that cannot be shown offline: an applied script stops there."""
        return next((r for r in self.revisions if r.unrenderable is not None), None)


# -- rendering --------------------------------------------------------------------------------


def render_upgrade(item: PluginPlan, *, lock_timeout: float,
                   script: ScriptDirectory | None = None) -> RenderedPlugin:
    """The SQL of `item`'s pending revisions, from `item.current` to `item.target`."""
    from migrator.scripts import load_script
    from migrator.steps import upgrade_walk

    script = script or load_script(item.plugin)
    steps = upgrade_walk(script, item.target, item.current) if item.pending else []
    return _render(item.plugin, script, UP, item.current, steps, lock_timeout=lock_timeout)


def render_downgrade(plugin: Plugin, *, start: tuple[str, ...], destination: str,
                     lock_timeout: float, script: ScriptDirectory | None = None
                     ) -> RenderedPlugin:
    """The SQL that reverts `plugin` from `start` to `destination` (a revision, -N, base)."""
    from migrator.scripts import load_script
    from migrator.steps import downgrade_walk

    script = script or load_script(plugin)
    steps = downgrade_walk(script, destination, start) if start else []
    return _render(plugin, script, DOWN, start, steps, lock_timeout=lock_timeout)


# What an offline revision sees as `sqlalchemy.url`: there is no database to name.
OFFLINE_URL = "postgresql+psycopg://offline"


def _render(plugin: Plugin, script: ScriptDirectory, direction: str, start: tuple[str, ...],
            steps: list[Any], *, lock_timeout: float) -> RenderedPlugin:
    """Alembic's offline mode as `env.py` would run it: an `EnvironmentContext` with the
    plugin's `Config` (so `context.config` reads work) and `context`/`op` installed."""
    from alembic.operations import Operations
    from alembic.runtime.environment import EnvironmentContext

    from migrator.backfill_spec import RENDER_HOOK
    from migrator.scripts import alembic_config

    recorder = _Recorder(plugin, direction, start, [str(s.revision.revision) for s in steps])
    # Typed loosely by Alembic's stubs (a list of revisions, a buffer, keyword callbacks).
    hooks: dict[str, Any] = {RENDER_HOOK: recorder.on_backfill, "output_buffer": _Discard(),
                             "starting_rev": list(start) or None,
                             "on_version_apply": [recorder.on_applied]}
    env = EnvironmentContext(alembic_config(plugin, OFFLINE_URL), script)
    env.configure(
        dialect_name="postgresql",
        # The named paramstyle: with the driver's pyformat, literal SQL would double every `%`.
        dialect_opts={"paramstyle": "named"},
        as_sql=True, literal_binds=True,
        transaction_per_migration=True,
        version_table=getattr(plugin, "version_table", "alembic_version"),
        version_table_schema=plugin.schema, fn=lambda _heads, _ctx: recorder.steps(steps),
        **hooks)
    ctx = env.get_context()
    recorder.attach(ctx)
    with env, Operations.context(ctx):
        ctx.run_migrations()
    return RenderedPlugin(
        plugin=plugin, direction=direction, start=start, end=recorder.end,
        setup=tuple(Statement(text, SETUP, False) for text in setup_sql(plugin, lock_timeout)),
        revisions=tuple(recorder.revisions),
        teardown=(Statement(f"SELECT pg_advisory_unlock({locking.plugin_key(plugin.name)});",
                            SETUP, False),))


class _Discard:
    """Alembic's output buffer: every statement reaches `_Recorder` first, so nothing is left."""

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


def unrenderable_statement(plugin: Plugin, revision: str, file: str, why: str,
                           direction: str = UP) -> str:
    """A comment saying why, then a statement that stops psql there with an error naming the
    revision: a script applied by psql never stamps work it did not do."""
    from migrator.backfill_offline import dollar_quote

    message = (f"migrator: revision {revision} of plugin {plugin.name} cannot be applied from "
               f"this script ({why}); apply it with: migrator "
               f"{'upgrade' if direction == UP else 'downgrade'} --plugin {plugin.name}")
    body = sql.SQL("BEGIN RAISE EXCEPTION '%', {}; END").format(sql.Literal(message))
    return "\n".join([
        f"-- migrator: revision {revision} ({file or 'unknown file'}) cannot be shown offline: "
        f"{why}.",
        f"-- Apply it with migrator (`migrator {'upgrade' if direction == UP else 'downgrade'}`"
        "); this script stops here, so nothing "
        "after it is stamped.",
        f"DO {dollar_quote(body.as_string(None))};"])


class _Recorder:
    """Sits between Alembic's offline rendering and its output: sorts each chunk into a
    `Statement` of the revision being rendered, drops the version table DDL migrator creates
    beforehand, renders backfills as batch loops, and adds the history row migrator writes in
    each revision's transaction."""

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
        self.unrenderable: str | None = None
        self.ctx: MigrationContext | None = None

    def attach(self, ctx: MigrationContext) -> None:
        self.ctx = ctx
        self._exec = ctx.impl._exec
        # Instance attributes shadow the methods: Alembic calls both through `ctx.impl`.
        ctx.impl._exec = self.exec_  # type: ignore[method-assign]  # the hook, see docstring
        ctx.impl.static_output = self.output  # type: ignore[method-assign]
        # `op.get_bind()` and `context.get_bind()` read these.
        bind = OfflineBind(ctx.connection)
        ctx.connection = ctx.impl.connection = bind  # type: ignore[assignment]  # a stand-in

    def steps(self, steps: list[Any]) -> Iterator[Any]:
        for step, revision in zip(steps, self.ids, strict=True):
            self._close()
            self.current = revision
            yield Guarded(step, self)
        self._close()

    def _close(self) -> None:
        if self.current is None:
            return
        found = self.plugin.revision(self.current)
        file = found.filename if found else ""
        statements = _without_empty_transactions(self.statements)
        if self.unrenderable is not None:
            statements = [Statement(unrenderable_statement(
                self.plugin, self.current, file, self.unrenderable, self.direction),
                UNRENDERABLE, False)]
        self.revisions.append(RenderedRevision(
            revision=self.current, path=found.file if found else "", file=file,
            message=found.message if found else "", statements=tuple(statements),
            unrenderable=self.unrenderable))
        self.current, self.statements, self.unrenderable = None, [], None
        self.pending_backfill = None

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
            from migrator.backfill_offline import render_offline

            kind, backfill, self.pending_backfill = BACKFILL, self.pending_backfill, None
            assert self.current is not None
            text = render_offline(backfill, plugin=self.plugin.name, revision=self.current)
        in_transaction = self.in_transaction or kind == COMMIT
        self.statements.append(Statement(text, kind, in_transaction, backfill))

    def on_backfill(self, description: Mapping[str, Any]) -> None:
        if description.get("transform") is not None:
            raise Unrenderable(
                f"its backfill {description.get('name')!r} uses transform="
                f"{description.get('transform')}, a Python function with no SQL form")
        self.pending_backfill = description

    def on_applied(self, *, ctx: Any, step: Any, heads: Any, run_args: Any) -> None:
        """Alembic callback after each version stamp: add the history row, as runner.py does."""
        revision = self.current
        assert revision is not None
        self.end = tuple(sorted(heads))  # where the revisions lead (the script may stop before)
        if self.unrenderable is not None:
            return  # rendered as a stop: nothing of it is stamped
        found = self.plugin.revision(revision)
        self.statements.append(Statement(
            history_insert(self.plugin, revision, self.direction,
                            revision_checksum(self.plugin, revision) if found else None),
            HISTORY, True))
        if revision == self.ids[-1]:
            # runner.py: earlier commits skip the WAL flush, the last one waits for it.
            self.statements.append(Statement("SET LOCAL synchronous_commit TO on;", SETUP, True))


def _without_empty_transactions(statements: list[Statement]) -> list[Statement]:
    """Drop each BEGIN directly followed by its COMMIT (a revision that emits nothing, or one
    whose work all runs in an autocommit block)."""
    kept: list[Statement] = []
    for statement in statements:
        if statement.kind == COMMIT and kept and kept[-1].kind == BEGIN:
            kept.pop()
            continue
        kept.append(statement)
    return kept


