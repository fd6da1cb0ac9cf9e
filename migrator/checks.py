"""`migrator check`: what is wrong with the database as the trees describe it.

Five kinds of finding, each naming the plugin and the revision or object, and what to do:

- `changed_revision`: an applied revision whose file no longer has the sha256 recorded in
  `migrator.history` when it was applied (applied revisions never run again);
- `unknown_revision`: a version table at a revision no file of the plugin's tree declares;
- `orphaned_plugin`: a schema migrator once migrated whose plugin is no longer installed;
- `model_drift`: for plugins with `models`, Alembic's comparison of that MetaData with the
  plugin's schema (and only that schema), when the plugin is at head;
- `invalid_index`: an INVALID index in a plugin schema, left by a failed concurrent build.

Everything here only reads: the caller's session is READ ONLY, and so is the one the model
comparison uses. Alembic and SQLAlchemy are imported only when some plugin sets `models`.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import psycopg
from psycopg import sql

from migrator import connections, db, records
from migrator.config import DatabaseUrl
from migrator.discovery import Plugin
from migrator.errors import TreeError
from migrator.logs import get_logger
from migrator.plan import ancestry

if TYPE_CHECKING:
    from sqlalchemy import MetaData

CHANGED_REVISION = "changed_revision"
UNKNOWN_REVISION = "unknown_revision"
ORPHANED_PLUGIN = "orphaned_plugin"
MODEL_DRIFT = "model_drift"
INVALID_INDEX = "invalid_index"
KINDS = (CHANGED_REVISION, UNKNOWN_REVISION, ORPHANED_PLUGIN, MODEL_DRIFT, INVALID_INDEX)


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem: its kind, where (plugin, revision or object), what, and what to do."""

    kind: str
    plugin: str
    message: str
    action: str
    revision: str | None = None
    object: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "plugin": self.plugin, "revision": self.revision,
                "object": self.object, "message": self.message, "action": self.action}


class Orphan(Protocol):
    """A plugin in the database with no tree (`commands.Orphan`)."""

    @property
    def name(self) -> str: ...
    @property
    def schema(self) -> str: ...
    @property
    def current(self) -> tuple[str, ...]: ...


@dataclass(frozen=True, slots=True)
class Report:
    findings: tuple[Finding, ...]
    plugins_checked: tuple[str, ...]
    drift_skipped: tuple[str, ...] = field(default=())  # plugins with models, not at head

    def as_dict(self) -> dict[str, Any]:
        return {"findings": [f.as_dict() for f in self.findings],
                "plugins_checked": list(self.plugins_checked),
                "drift_skipped": list(self.drift_skipped)}

    def summary(self) -> str:
        """One line for the exit-5 error: how many findings of which kind, in which plugins."""
        counts = {kind: sum(1 for f in self.findings if f.kind == kind) for kind in KINDS}
        kinds = ", ".join(f"{n} {kind}" for kind, n in counts.items() if n)
        plugins = sorted({f.plugin for f in self.findings})
        return (f"check found {len(self.findings)} problem(s) ({kinds}) in plugin(s) "
                f"{', '.join(plugins)}; each finding above says what to do")


def run(conn: psycopg.Connection[Any], url: DatabaseUrl, plugins: Sequence[Plugin],
        orphans: Iterable[Orphan], *, connect_timeout: float = 10.0) -> Report:
    """Every check, in a stable order: per plugin, then orphans, then invalid indexes."""
    orphans = tuple(orphans)
    current = db.read_current_revisions(conn, plugins)
    applied = records.applied_checksums(conn)
    findings: list[Finding] = []
    drift_skipped: list[str] = []
    for plugin in plugins:
        revisions = current.get(plugin.schema, ())
        findings += _unknown_revisions(plugin, revisions)
        findings += _changed_revisions(plugin, revisions, applied.get(plugin.name, {}))
        if plugin.models:
            if plugin.head is not None and revisions == (plugin.head,):
                findings += model_drift(url, plugin, connect_timeout=connect_timeout)
            else:
                drift_skipped.append(plugin.name)
                get_logger().info("check.drift_skipped", plugin=plugin.name,
                                  reason="not at head; run migrator upgrade first")
    findings += [_orphaned(orphan) for orphan in orphans]
    owners = {p.schema: p.name for p in plugins} | {o.schema: o.name for o in orphans}
    findings += _invalid_indexes(conn, owners)
    return Report(findings=tuple(findings), plugins_checked=tuple(p.name for p in plugins),
                  drift_skipped=tuple(drift_skipped))


# -- revisions --------------------------------------------------------------------------------


def _unknown_revisions(plugin: Plugin, revisions: tuple[str, ...]) -> list[Finding]:
    return [Finding(
        kind=UNKNOWN_REVISION, plugin=plugin.name, revision=revision,
        object=f"{plugin.schema}.{db.VERSION_TABLE}",
        message=f"plugin {plugin.name!r} is at revision {revision}, which no file in "
                f"{plugin.versions_dir} declares",
        action="restore the revision file (a plugin downgraded to an older release?), or, if "
               f"the database really matches a known revision, record it: migrator stamp "
               f"--plugin {plugin.name} REVISION") for revision in revisions
        if plugin.revision(revision) is None]


def _changed_revisions(plugin: Plugin, revisions: tuple[str, ...],
                       recorded: dict[str, tuple[str, str]]) -> list[Finding]:
    findings = []
    applied = ancestry(plugin, revisions)
    for rev in plugin.revisions:
        if rev.revision not in applied or rev.revision not in recorded:
            continue
        checksum, when = recorded[rev.revision]
        if not rev.checksum_matches(checksum):  # the code's checksum (earlier versions: bytes)
            now = rev.checksum
            findings.append(Finding(
                kind=CHANGED_REVISION, plugin=plugin.name, revision=rev.revision,
                object=rev.file,
                message=f"plugin {plugin.name!r} revision {rev.revision} ({rev.filename}) was "
                        f"applied at {when} UTC with sha256 {checksum[:12]}…, the file now has "
                        f"{now[:12]}…",
                action="comments, blank lines and trailing whitespace do not count, so the "
                       "code changed. Applied revisions never run again: restore the file as it "
                       "was applied (see its version control history) and put the change in a "
                       f"new revision: migrator revision --plugin {plugin.name} -m MESSAGE; if "
                       "the edit is intentional and the database already matches it: "
                       f"migrator repair --plugin {plugin.name}"))
    return findings


def _orphaned(orphan: Orphan) -> Finding:
    at = ",".join(orphan.current) or "base"
    return Finding(
        kind=ORPHANED_PLUGIN, plugin=orphan.name, revision=",".join(orphan.current) or None,
        object=orphan.schema,
        message=f"schema {orphan.schema!r} holds plugin {orphan.name!r} at revision {at}, "
                "but no installed plugin tree has that name; migrator leaves it untouched",
        action="reinstall the plugin, or, if it was removed on purpose, back up and drop "
               f"schema {orphan.schema!r} and its rows in migrator.history")


# -- indexes ----------------------------------------------------------------------------------


def _invalid_indexes(conn: psycopg.Connection[Any], owners: dict[str, str]) -> list[Finding]:
    if not owners:
        return []
    rows = conn.execute(
        "SELECT n.nspname, c.relname, t.relname FROM pg_catalog.pg_index i "
        "JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid "
        "JOIN pg_catalog.pg_class t ON t.oid = i.indrelid "
        "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
        "WHERE NOT i.indisvalid AND n.nspname = ANY(%s) ORDER BY 1, 2",
        (sorted(owners),)).fetchall()
    findings = []
    for schema, index, table in rows:
        name = sql.Identifier(schema, index).as_string(conn)
        findings.append(Finding(
            kind=INVALID_INDEX, plugin=owners[schema], object=f"{schema}.{index}",
            message=f"index {schema}.{index} on table {table} is INVALID: a CREATE INDEX "
                    "CONCURRENTLY failed or was interrupted; queries do not use it, but every "
                    "write still maintains it",
            action=f"drop it (DROP INDEX CONCURRENTLY {name}) and rerun the revision that "
                   f"builds it, or rebuild it in place: REINDEX INDEX CONCURRENTLY {name}"))
    return findings


# -- models -----------------------------------------------------------------------------------


def load_metadata(plugin: Plugin) -> MetaData:
    """The SQLAlchemy MetaData named by `models` ('package.module:attribute'), imported with
    the working directory and the migrations directory on sys.path (so `panels.models` can
    live beside `panels/versions`). A declarative base works too."""
    from sqlalchemy import MetaData

    assert plugin.models is not None
    where = plugin.path / "plugin.toml"
    module_name, _, attribute = plugin.models.partition(":")
    try:
        with _importable_from(os.getcwd(), str(plugin.path.parent)):
            target: Any = importlib.import_module(module_name)
        for part in attribute.split("."):
            target = getattr(target, part)
    except Exception as exc:  # the plugin's own module failed to import: any error type
        raise TreeError(
            f"{where}: models {plugin.models!r} cannot be loaded ({type(exc).__name__}: "
            f"{_first_line(exc)}); make the module importable (install the plugin's package) "
            "or fix the name", plugin=plugin.name, path=str(where)) from None
    metadata = getattr(target, "metadata", target)
    if not isinstance(metadata, MetaData):
        raise TreeError(
            f"{where}: models {plugin.models!r} is a {type(target).__name__}, not SQLAlchemy "
            "MetaData (or a declarative base); point it at the models' MetaData",
            plugin=plugin.name, path=str(where))
    return metadata


@contextmanager
def _importable_from(*directories: str) -> Iterator[None]:
    added = [d for d in dict.fromkeys(directories) if d not in sys.path]
    sys.path.extend(added)  # last: installed packages win
    try:
        yield
    finally:
        for directory in added:
            sys.path.remove(directory)


def _scoped(metadata: MetaData, schema: str) -> MetaData:
    """A copy where the plugin's own tables have no schema (they live on search_path) and
    other schemas' tables stay only so foreign keys into them resolve."""
    from sqlalchemy import MetaData

    scoped = MetaData()
    for table in metadata.tables.values():
        if table.schema == schema:
            # None: the target MetaData's schema, None here (documented; the stub omits it)
            table.to_metadata(scoped, schema=None)  # type: ignore[arg-type]  # None = "no schema", as documented
        else:
            table.to_metadata(scoped)
    return scoped


def model_drift(url: DatabaseUrl, plugin: Plugin, *, connect_timeout: float) -> list[Finding]:
    """Alembic's comparison of the plugin's models with its schema, and only its schema."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy import create_engine
    from sqlalchemy.pool import NullPool

    metadata = _scoped(load_metadata(plugin), plugin.schema)

    def creator() -> psycopg.Connection[Any]:
        conn: psycopg.Connection[Any] = connections.connect(url, timeout=connect_timeout,
                                                            autocommit=False)
        conn.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(plugin.schema)))
        conn.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
        conn.commit()
        return conn

    def include_name(name: str | None, type_: str, parents: dict[str, Any]) -> bool:
        if type_ == "schema":
            return name is None
        return not (type_ == "table" and name == db.VERSION_TABLE)

    def include_object(obj: Any, name: str | None, type_: str, reflected: bool,
                       compare_to: Any) -> bool:
        return not (type_ == "table" and getattr(obj, "schema", None) is not None)

    engine = create_engine("postgresql+psycopg://", creator=creator, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection=connection, opts={
                "include_name": include_name, "include_object": include_object,
                "compare_type": True})
            diffs = compare_metadata(context, metadata)
    finally:
        engine.dispose()
    return [Finding(
        kind=MODEL_DRIFT, plugin=plugin.name, object=obj,
        message=f"plugin {plugin.name!r}: {text} (models {plugin.models} against schema "
                f"{plugin.schema!r})",
        action="write a revision for the change (migrator revision --plugin "
               f"{plugin.name} --autogenerate -m MESSAGE) or fix the models")
        for obj, text in (describe_diff(plugin.schema, diff) for diff in _flatten(diffs))]


def _flatten(diffs: Iterable[Any]) -> Iterator[Any]:
    for diff in diffs:
        # Column modifications come as a list of tuples, one per changed attribute.
        if isinstance(diff, list):
            yield from diff
        else:
            yield diff


def describe_diff(schema: str, diff: tuple[Any, ...]) -> tuple[str, str]:
    """(object, sentence) for one of Alembic's diff tuples."""
    kind = diff[0]

    def table_name(table: Any) -> str:
        return f"{schema}.{table.name}"

    if kind in ("add_table", "remove_table"):
        where = "models, not in the database" if kind == "add_table" else \
            "database, not in the models"
        return table_name(diff[1]), f"table {table_name(diff[1])} is in the {where}"
    if kind in ("add_column", "remove_column"):
        _, _, table, column = diff
        obj = f"{schema}.{table}.{column.name}"
        where = "models, not in the database" if kind == "add_column" else \
            "database, not in the models"
        return obj, f"column {obj} is in the {where}"
    if kind.startswith("modify_"):
        _, _, table, column, _existing, old, new = diff
        obj = f"{schema}.{table}.{column}"
        what = kind.removeprefix("modify_")
        if what == "nullable":
            old, new = ("NULL" if v else "NOT NULL" for v in (old, new))
        return obj, f"column {obj} differs in {what}: {old} in the database, {new} in the models"
    if kind in ("add_index", "remove_index", "add_constraint", "remove_constraint",
                "add_fk", "remove_fk"):
        item = diff[1]
        noun = {"index": "index", "constraint": "constraint", "fk": "foreign key"}[
            kind.split("_", 1)[1]]
        table = getattr(item, "table", None)
        obj = f"{schema}.{item.name or '(unnamed)'}"
        on = f" on {table_name(table)}" if table is not None else ""
        where = "models, not in the database" if kind.startswith("add_") else \
            "database, not in the models"
        return obj, f"{noun} {item.name or '(unnamed)'}{on} is in the {where}"
    return schema, f"{kind}: " + ", ".join(str(part) for part in diff[1:])


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
