"""Database sessions for a running platform: a plugin's `get_plugin_db_session()`.

A session from here is bound to one plugin's schema: every pooled connection gets
`search_path = <schema>, public` when it is opened, so a plugin's unqualified table names
resolve to its own schema, exactly as they did while its revisions ran. Sessions are made with
`expire_on_commit=False` (committed objects never trigger surprise queries, which matters in
async code). The same classes serve the *integrated* mode (the platform's PostgreSQL) and a
*standalone* mode on the embedded PostgreSQL, migrated to head first, so a plugin developed
alone runs the same SQL on the same database engine as in production::

    from migrator.runtime import PluginDatabase

    database = PluginDatabase.integrated("panels", "postgresql://app@db/platform")
    async with database.async_session() as session:
        rows = (await session.execute(select(Panel).where(...))).scalars().all()

SQLAlchemy is imported here, not by `migrator` itself: this module is for the platform's
process, never for the migration run. Async sessions use psycopg's async driver and need
SQLAlchemy's asyncio extra (`pip install 'migrator[async]'`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from psycopg import sql

from migrator.config import DatabaseUrl
from migrator.discovery import validate_schema_name

if TYPE_CHECKING:
    from sqlalchemy.engine import URL, Engine
    from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
    from sqlalchemy.orm import Session, sessionmaker

    from migrator.config import Settings

__all__ = [
    "PluginDatabase",
    "create_async_engine",
    "create_engine",
    "search_path_statement",
    "sqlalchemy_url",
]


def search_path_statement(schema: str) -> sql.Composed:
    """`SET search_path TO "<schema>", "public"`, as migrator sets it while revisions run."""
    from migrator.db import search_path

    validate_schema_name(schema, where="search_path", plugin=schema)
    return search_path(schema)


def sqlalchemy_url(url: DatabaseUrl | str) -> URL:
    """SQLAlchemy's URL for a migrator database URL (any accepted scheme), driver psycopg."""
    parsed = url if isinstance(url, DatabaseUrl) else DatabaseUrl.parse(url, source="url")
    # psycopg 3 serves both the sync and the async engine; the URL keeps every libpq
    # parameter (host= for a Unix socket, sslmode, ...).
    url_object: URL = parsed.sqlalchemy_url()
    return url_object


def _set_search_path_on_connect(engine: Engine, schema: str) -> None:
    """Run SET search_path on every new DBAPI connection of `engine`'s pool, before SQLAlchemy
    looks at the connection (so its default schema is the plugin's)."""
    from sqlalchemy import event

    statement = search_path_statement(schema)

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # SQLAlchemy's recipe: a session-level SET outside any transaction, so a rollback of
        # the first transaction cannot undo it.
        autocommit = dbapi_connection.autocommit
        dbapi_connection.autocommit = True
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(statement)
        finally:
            cursor.close()
        dbapi_connection.autocommit = autocommit

    event.listen(engine, "connect", on_connect, insert=True)


def create_engine(url: DatabaseUrl | str, schema: str, **engine_options: Any) -> Engine:
    """A SQLAlchemy engine (psycopg 3) whose connections all use `schema` first."""
    from sqlalchemy import create_engine as sa_create_engine

    engine = sa_create_engine(sqlalchemy_url(url), **engine_options)
    _set_search_path_on_connect(engine, schema)
    return engine


def create_async_engine(url: DatabaseUrl | str, schema: str, **engine_options: Any
                        ) -> AsyncEngine:
    """An asyncio SQLAlchemy engine (psycopg 3 async) whose connections all use `schema`."""
    from sqlalchemy.ext.asyncio import create_async_engine as sa_create_async_engine

    engine = sa_create_async_engine(sqlalchemy_url(url), **engine_options)
    _set_search_path_on_connect(engine.sync_engine, schema)
    return engine


@dataclass(slots=True)
class PluginDatabase:
    """One plugin's view of the platform database: engines and sessions on its schema.

    Build it with `integrated(...)` (the platform's database), `from_settings(...)` (the same
    settings the `migrator` command reads) or `standalone(...)` (the embedded server, migrated
    to head). Engines are created on first use and shared; `dispose()` / `adispose()` close
    their pools.
    """

    plugin: str
    schema: str
    url: DatabaseUrl = field(repr=False)
    engine_options: dict[str, Any] = field(default_factory=dict)
    _engine: Engine | None = field(default=None, init=False, repr=False)
    _async_engine: AsyncEngine | None = field(default=None, init=False, repr=False)
    _sessions: sessionmaker[Session] | None = field(default=None, init=False, repr=False)
    _async_sessions: async_sessionmaker[AsyncSession] | None = field(
        default=None, init=False, repr=False)

    # -- constructors ------------------------------------------------------------------------

    @classmethod
    def integrated(cls, plugin: str, url: DatabaseUrl | str, *, schema: str | None = None,
                   migrations_dir: Path | str | None = None,
                   **engine_options: Any) -> PluginDatabase:
        """The plugin on the platform's database at `url`.

        The schema is `schema` when given, else the one the plugin's tree declares when
        `migrations_dir` is given (installed plugin packages count too), else the plugin's
        name (migrator's default).
        """
        parsed = url if isinstance(url, DatabaseUrl) else DatabaseUrl.parse(url, source="url")
        if schema is None:
            schema = _schema_of(plugin, Path(migrations_dir) if migrations_dir else None)
        validate_schema_name(schema, where=f"plugin {plugin!r}", plugin=plugin)
        return cls(plugin=plugin, schema=schema, url=parsed, engine_options=engine_options)

    @classmethod
    def from_settings(cls, settings: Settings, plugin: str, **engine_options: Any
                      ) -> PluginDatabase:
        """The plugin on the database `migrator` itself would use with these settings
        (`--database-url`, `MIGRATOR_DATABASE_URL[_FILE]` or `--embedded`)."""
        from migrator import commands, db

        found = commands.plugin_named(commands.plugins(settings), plugin)
        return cls(plugin=plugin, schema=found.schema, url=db.resolve_url(settings),
                   engine_options=engine_options)

    @classmethod
    def standalone(cls, plugin: str, *, migrations_dir: Path | str = "plugin_migrations",
                   pgdata: Path | str = Path(".migrator") / "pgdata", migrate: bool = True,
                   **engine_options: Any) -> PluginDatabase:
        """The plugin on the local embedded PostgreSQL in `pgdata` (started if needed, and
        kept running), with the plugin and its dependencies upgraded to head first.

        The same server, schema, search_path and SQL as production: JSONB containment,
        schemas and transactional DDL behave exactly as they will there.
        """
        from migrator import commands, embedded, runs
        from migrator.config import Settings

        url = DatabaseUrl.parse(embedded.ensure_server(Path(pgdata).resolve()),
                                source="embedded server")
        settings = Settings(database_url=url, migrations_dir=Path(migrations_dir))
        found = commands.plugin_named(commands.plugins(settings), plugin)
        if migrate:
            runs.upgrade(settings, [plugin])
        return cls(plugin=plugin, schema=found.schema, url=url, engine_options=engine_options)

    # -- engines and sessions ------------------------------------------------------------------

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = create_engine(self.url, self.schema, **self.engine_options)
        return self._engine

    @property
    def async_engine(self) -> AsyncEngine:
        if self._async_engine is None:
            self._async_engine = create_async_engine(self.url, self.schema, **self.engine_options)
        return self._async_engine

    @property
    def sessionmaker(self) -> sessionmaker[Session]:
        """A `sessionmaker` on the plugin's schema, `expire_on_commit=False`."""
        if self._sessions is None:
            from sqlalchemy.orm import sessionmaker

            self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        return self._sessions

    @property
    def async_sessionmaker(self) -> async_sessionmaker[AsyncSession]:
        """An `async_sessionmaker` on the plugin's schema, `expire_on_commit=False`."""
        if self._async_sessions is None:
            from sqlalchemy.ext.asyncio import async_sessionmaker

            self._async_sessions = async_sessionmaker(self.async_engine, expire_on_commit=False)
        return self._async_sessions

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A new session, closed on exit (commit yourself, or use `session.begin()`)."""
        with self.sessionmaker() as session:
            yield session

    @asynccontextmanager
    async def async_session(self) -> AsyncIterator[AsyncSession]:
        """A new async session, closed on exit (commit yourself, or use `session.begin()`)."""
        async with self.async_sessionmaker() as session:
            yield session

    def dispose(self) -> None:
        """Close the sync engine's pooled connections."""
        if self._engine is not None:
            self._engine.dispose()

    async def adispose(self) -> None:
        """Close both engines' pooled connections."""
        if self._async_engine is not None:
            await self._async_engine.dispose()
        self.dispose()


def _schema_of(plugin: str, migrations_dir: Path | None) -> str:
    """The plugin's schema as its tree declares it, or its name when no tree is at hand."""
    if migrations_dir is None:
        return plugin
    from migrator import discovery

    for found in discovery.discover(migrations_dir):
        if found.name == plugin:
            return found.schema
    from migrator.errors import UnknownPlugin

    raise UnknownPlugin(f"plugin {plugin!r} is not in {migrations_dir} nor installed; check the "
                        "name or the migrations directory", plugin=plugin)
