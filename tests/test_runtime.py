"""`migrator.runtime`: the platform's sessions for a plugin, against real PostgreSQL.

The example `panels` plugin, migrated by migrator, queried the way a plugin's repository
queries it: through real async (psycopg async) and sync SQLAlchemy sessions whose pooled
connections all have the plugin's schema first on search_path.
"""

from __future__ import annotations

import asyncio
import importlib
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import psycopg
import pytest
from sqlalchemy import func, select, text, update
from sqlalchemy.exc import IntegrityError

from migrator import logs, runs
from migrator.config import DatabaseUrl, Settings
from migrator.embedded import stop_server
from migrator.errors import UsageError
from migrator.runtime import PluginDatabase, search_path_statement

REPO_ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_PLATFORM = REPO_ROOT / "plugin_migrations"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _in_process_runs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No termination message; events to this test's stderr (an earlier test may have left
    structlog writing to a stream closed since)."""
    monkeypatch.setenv("MIGRATOR_TERMINATION_LOG", str(tmp_path / "termination-log"))
    logs.configure()


@pytest.fixture
def models(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The panels plugin's models (plugin_migrations/panels/models.py), as `panels.models`."""
    monkeypatch.syspath_prepend(str(EXAMPLE_PLATFORM))
    return importlib.import_module("panels.models")


@pytest.fixture
def platform(database_url: str) -> dict[str, Any]:
    """The example platform migrated to head, with one account and two experiments."""
    runs.upgrade(Settings(database_url=DatabaseUrl.parse(database_url, source="test"),
                              migrations_dir=EXAMPLE_PLATFORM, connect_timeout=10))
    with psycopg.connect(database_url, autocommit=True) as conn:
        account = conn.execute("INSERT INTO core.accounts (email) VALUES ('a@example.org') "
                               "RETURNING id").fetchone()
        assert account is not None
        experiments = [conn.execute(
            "INSERT INTO core.experiments (account_id, name) VALUES (%s, %s) RETURNING id",
            (account[0], name)).fetchone()[0] for name in ("first", "second")]  # type: ignore[index]
    return {"url": database_url, "experiments": experiments}


@pytest.fixture
def database(platform: dict[str, Any]) -> Iterator[PluginDatabase]:
    """The panels plugin's database, its schema read from the tree."""
    db = PluginDatabase.integrated("panels", platform["url"], migrations_dir=EXAMPLE_PLATFORM,
                                   pool_size=3, max_overflow=0)
    yield db
    db.dispose()


def panels_for(models: ModuleType, experiments: list[uuid.UUID]) -> list[Any]:
    """12 panels: 6 per experiment, drugs alternating, created an hour apart."""
    panels = []
    for n in range(12):
        drug = "cisplatin" if n % 2 == 0 else "doxorubicin"
        panels.append(models.Panel(
            experiment_id=experiments[n % 2], name=f"panel-{n:02d}",
            drugs=[{"name": drug, "dose_um": n}, {"name": "control"}],
            created_at=T0 + timedelta(hours=n)))
    return panels


def test_integrated_schema_comes_from_the_tree(platform: dict[str, Any], tmp_path: Path) -> None:
    """integrated() takes the schema plugin.toml declares, and refuses an unknown plugin."""
    tree = Path(shutil.copytree(EXAMPLE_PLATFORM, tmp_path / "platform",
                                ignore=shutil.ignore_patterns("__pycache__")))
    toml = tree / "panels" / "plugin.toml"
    toml.write_text(toml.read_text() + '\nschema = "panel_data"\n')

    assert PluginDatabase.integrated("panels", platform["url"], migrations_dir=tree
                                     ).schema == "panel_data"
    assert PluginDatabase.integrated("panels", platform["url"]).schema == "panels"
    with pytest.raises(UsageError, match="plugin 'nope' is not in"):
        PluginDatabase.integrated("nope", platform["url"], migrations_dir=tree)
    with pytest.raises(UsageError, match="schema 'migrator' is not allowed"):
        search_path_statement("migrator")
    # One plugin may live in public (an adopted Alembic app): then public alone.
    assert search_path_statement("public").as_string() == 'SET search_path TO "public"'


def test_every_pooled_async_connection_resolves_to_the_plugin_schema(
        database: PluginDatabase) -> None:
    """Three sessions holding three pooled connections at once all see `panels` first on
    search_path; unqualified `panels` is the plugin's table, even after a rollback."""

    async def probe() -> list[tuple[Any, ...]]:
        async def one() -> tuple[Any, ...]:
            async with database.async_session() as session:
                await session.execute(text("SELECT 1"))
                await session.rollback()  # a rolled-back transaction keeps the session's SET
                row = (await session.execute(text(
                    "SELECT current_schema(), pg_backend_pid(), "
                    "(SELECT relnamespace::regnamespace::text FROM pg_class "
                    "WHERE oid = to_regclass('panels')), (SELECT count(*) FROM panels)"))).one()
                await asyncio.sleep(0.05)  # hold the connection while the others check out
                return tuple(row)

        rows = await asyncio.gather(one(), one(), one())
        await database.adispose()
        return rows

    rows = asyncio.run(probe())

    assert {row[0] for row in rows} == {"panels"}
    assert len({row[1] for row in rows}) == 3  # three distinct pooled connections
    assert {row[2] for row in rows} == {"panels"}  # the schema of unqualified `panels`


def test_a_plugins_typical_queries_through_async_sessions(
        database: PluginDatabase, platform: dict[str, Any], models: ModuleType) -> None:
    """Bulk insert in one transaction, filter by experiment, JSONB containment on a drug name,
    count and latest created_at per experiment, soft-delete filter, text() with bound
    parameters; committed objects stay readable (expire_on_commit=False)."""
    Panel = models.Panel
    first, second = platform["experiments"]

    async def scenario() -> dict[str, Any]:
        found: dict[str, Any] = {}
        async with database.async_session() as session:
            async with session.begin():
                session.add_all(panels_for(models, [first, second]))
            # expire_on_commit=False: reading after commit needs no query (async code would
            # raise MissingGreenlet on an implicit refresh).
            kept = (await session.execute(select(Panel).where(Panel.name == "panel-00"))
                    ).scalar_one()
            await session.commit()
            found["kept_name"] = kept.name

        async with database.async_session() as session:
            found["by_experiment"] = (await session.execute(
                select(Panel.name).where(Panel.experiment_id == first).order_by(Panel.name)
            )).scalars().all()
            found["with_cisplatin"] = (await session.execute(
                select(Panel.name).where(Panel.drugs.contains([{"name": "cisplatin"}]))
                .order_by(Panel.name))).scalars().all()
            found["per_experiment"] = (await session.execute(
                select(Panel.experiment_id, func.count(), func.max(Panel.created_at))
                .group_by(Panel.experiment_id))).all()
            await session.execute(update(Panel).where(Panel.name.in_(
                ["panel-00", "panel-02"])).values(deleted_at=func.now()))
            await session.commit()
            found["live_in_first"] = (await session.execute(
                select(func.count()).select_from(Panel)
                .where(Panel.experiment_id == first, Panel.deleted_at.is_(None)))).scalar_one()
            found["raw"] = (await session.execute(
                text("SELECT count(*) FROM panels WHERE experiment_id = :experiment "
                     "AND drugs @> CAST(:drug AS jsonb)"),
                {"experiment": second, "drug": '[{"name": "doxorubicin"}]'})).scalar_one()
        await database.adispose()
        return found

    found = asyncio.run(scenario())

    assert found["kept_name"] == "panel-00"
    assert found["by_experiment"] == [f"panel-{n:02d}" for n in range(0, 12, 2)]
    assert found["with_cisplatin"] == [f"panel-{n:02d}" for n in range(0, 12, 2)]
    assert sorted(found["per_experiment"]) == sorted([
        (first, 6, T0 + timedelta(hours=10)), (second, 6, T0 + timedelta(hours=11))])
    assert found["live_in_first"] == 4
    assert found["raw"] == 6


def test_a_failing_bulk_insert_leaves_nothing(database: PluginDatabase,
                                              platform: dict[str, Any],
                                              models: ModuleType) -> None:
    """A bulk insert is one transaction: a duplicate name (unique per experiment) in the
    batch rolls the whole batch back."""
    first = platform["experiments"][0]
    batch = [models.Panel(experiment_id=first, name=name) for name in ("a", "b", "c", "a")]

    async def scenario() -> int:
        async with database.async_session() as session:
            with pytest.raises(IntegrityError, match="uq_panels_experiment_id_name"):
                async with session.begin():
                    session.add_all(batch)
            count = (await session.execute(select(func.count()).select_from(models.Panel))
                     ).scalar_one()
        await database.adispose()
        return int(count)

    assert asyncio.run(scenario()) == 0


def test_sync_sessions_work_the_same(database: PluginDatabase, platform: dict[str, Any],
                                     models: ModuleType) -> None:
    """The sync sessionmaker: same schema, same queries, expire_on_commit=False."""
    Panel = models.Panel
    first, second = platform["experiments"]
    with database.session() as session, session.begin():
        session.add_all(panels_for(models, [first, second]))
    with database.session() as session:
        assert session.execute(text("SELECT current_schema()")).scalar_one() == "panels"
        names = session.execute(
            select(Panel.name).where(Panel.experiment_id == second,
                                     Panel.drugs.contains([{"name": "doxorubicin"}]))
        ).scalars().all()
        panel = session.execute(select(Panel).where(Panel.name == "panel-01")).scalar_one()
        session.commit()
    assert len(names) == 6
    assert panel.drugs[0]["name"] == "doxorubicin"  # still loaded after commit and close


def test_standalone_mode_runs_on_the_embedded_server(tmp_path: Path,
                                                     models: ModuleType) -> None:
    """standalone() starts the embedded PostgreSQL, migrates the plugin and its dependencies
    to head, and gives sessions that behave as in production (JSONB containment included)."""
    tree = Path(shutil.copytree(EXAMPLE_PLATFORM, tmp_path / "platform",
                                ignore=shutil.ignore_patterns("__pycache__")))
    workdir = Path(tempfile.mkdtemp(prefix="migrator-standalone-"))  # short: socket path
    pgdata = workdir / "pgdata"
    try:
        database = PluginDatabase.standalone("panels", migrations_dir=tree, pgdata=pgdata)
        with database.session() as session, session.begin():
            account = session.execute(text(
                "INSERT INTO core.accounts (email) VALUES ('s@example.org') RETURNING id")
            ).scalar_one()
            experiment = session.execute(text(
                "INSERT INTO core.experiments (account_id, name) VALUES (:a, 'e') RETURNING id"),
                {"a": account}).scalar_one()
            session.add_all(panels_for(models, [experiment, experiment]))

        async def count() -> int:
            async with database.async_session() as session:
                found = (await session.execute(
                    select(func.count()).select_from(models.Panel)
                    .where(models.Panel.drugs.contains([{"name": "cisplatin"}])))).scalar_one()
            await database.adispose()
            return int(found)

        assert asyncio.run(count()) == 6
        with database.session() as session:
            version = session.execute(text("SHOW server_version_num")).scalar_one()
            schema = session.execute(text("SELECT current_schema()")).scalar_one()
        assert int(version) >= 180000
        assert schema == "panels"
        database.dispose()
        # Standalone again on the same data: already at head, nothing to do, data kept.
        again = PluginDatabase.standalone("panels", migrations_dir=tree, pgdata=pgdata)
        with again.session() as session:
            assert session.execute(select(func.count()).select_from(models.Panel)
                                   ).scalar_one() == 12
        again.dispose()
    finally:
        stop_server(pgdata)
        shutil.rmtree(workdir, ignore_errors=True)
