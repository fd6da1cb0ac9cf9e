"""A pytest plugin for plugin authors: a fresh PostgreSQL database per test and the checks
every plugin tree should pass.

Installed with migrator and registered through the `pytest11` entry point `migrator` (turn it
off with `-p no:migrator`). Importing it costs nothing: no database is touched and neither
Alembic nor SQLAlchemy is imported until a fixture that needs them runs.

Fixtures (all prefixed `migrator_`):

- `migrator_server_url` (session): `MIGRATOR_TEST_DATABASE_URL` when set, else an embedded
  PostgreSQL started once per test session (per pytest-xdist worker) and stopped at the end.
- `migrator_database_url`: a new, empty database on that server, dropped after the test.
- `migrator_migrations_dir`: the `migrator_migrations_dir` ini option, else
  `MIGRATOR_MIGRATIONS_DIR`, else `plugin_migrations` beside the ini file (or the rootdir).
- `migrator_settings`: `migrator.config.Settings` for that database and directory, the same
  value the `migrator` command builds; hand it to `migrator.commands` functions.
- `migrator_checks`: `MigratorChecks` on those settings.

The ready-made checks, each on a fresh database::

    from migrator.testing import PluginTreeChecks

    class TestMigrations(PluginTreeChecks):      # every discovered plugin ...
        plugins = ("panels",)                    # ... or only these

- stairway: for each revision, oldest first: upgrade to it, downgrade one step, upgrade
  again, and the plugin's schema after the second upgrade equals the first;
- round trip: from the dependencies at head, upgrade to head, downgrade to base: every schema
  is exactly as before (compared by a catalog fingerprint); upgrading again rebuilds the
  same schema;
- models match migrations: at head, the plugin's `models` and its schema do not differ
  (`migrator check`'s model-drift comparison); skipped when `plugin.toml` names no models.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from migrator.config import DatabaseUrl, Settings
from migrator.discovery import Plugin
from migrator.fingerprints import Fingerprint, schema_fingerprint

TEST_DATABASE_VARIABLE = "MIGRATOR_TEST_DATABASE_URL"
_INI_MIGRATIONS_DIR = "migrator_migrations_dir"


# -- the checks -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MigratorChecks:
    """The ready-made checks, on the database and trees of `settings`. Each raises
    AssertionError saying which revision or object is wrong."""

    settings: Settings

    @property
    def url(self) -> DatabaseUrl:
        assert self.settings.database_url is not None, "the checks need a database URL"
        return self.settings.database_url

    def plugin(self, name: str) -> Plugin:
        from migrator import commands

        return commands.plugin_named(commands.plugins(self.settings), name)

    def fingerprint(self, schemas: Sequence[str] | None = None) -> Fingerprint:
        return schema_fingerprint(self.url, schemas)

    def stairway(self, name: str) -> None:
        """Each revision, oldest first: upgrade to it, downgrade one step, upgrade again; the
        plugin's schema after the second upgrade must equal the first."""
        from migrator import runs, scripts

        plugin = self.plugin(name)
        order = scripts.upgrade_order(plugin, ())  # Alembic's own order, branches included
        for revision in order:
            where = f"stairway of plugin {name!r} at revision {revision}"
            with _step(where, "upgrade"):
                runs.upgrade(self.settings, [name], to=revision)
            first = self.fingerprint([plugin.schema])
            with _step(where, "downgrade -1"):
                runs.downgrade(self.settings, name, "-1")
            with _step(where, "upgrade after its downgrade"):
                runs.upgrade(self.settings, [name], to=revision)
            second = self.fingerprint([plugin.schema])
            if first != second:
                raise AssertionError(
                    f"{where}: downgrade then upgrade does not rebuild the same schema:\n"
                    + "\n".join(first.differences(second)))

    def round_trip(self, name: str) -> None:
        """Upgrade to head then downgrade to base leaves every schema exactly as before;
        upgrading again rebuilds the same schema as the first time."""
        from migrator import runs

        plugin = self.plugin(name)
        if plugin.depends_on:
            with _step(f"round trip of plugin {name!r}", "upgrade of its dependencies"):
                runs.upgrade(self.settings, list(plugin.depends_on))
        before = self.fingerprint()
        with _step(f"round trip of plugin {name!r}", "upgrade to head"):
            runs.upgrade(self.settings, [name])
        at_head = self.fingerprint()
        with _step(f"round trip of plugin {name!r}", "downgrade to base"):
            runs.downgrade(self.settings, name, "base")
        after = self.fingerprint()
        if before != after:
            raise AssertionError(
                f"round trip of plugin {name!r}: downgrade to base does not leave the "
                "database as it was before the upgrade (+ left behind, - removed, ~ changed):\n"
                + "\n".join(before.differences(after)))
        with _step(f"round trip of plugin {name!r}", "upgrade to head again"):
            runs.upgrade(self.settings, [name])
        again = self.fingerprint()
        if at_head != again:
            raise AssertionError(
                f"round trip of plugin {name!r}: upgrading again after a downgrade to base "
                "builds a different schema:\n" + "\n".join(at_head.differences(again)))

    def models_match(self, name: str) -> None:
        """At head, the plugin's `models` describe its schema exactly (`migrator check`'s
        model-drift comparison, confined to the plugin's schema)."""
        from migrator import checks, runs

        plugin = self.plugin(name)
        if not plugin.models:
            raise AssertionError(f"plugin {name!r} names no models in its plugin.toml")
        with _step(f"models check of plugin {name!r}", "upgrade to head"):
            runs.upgrade(self.settings, [name])
        findings = checks.model_drift(self.url, plugin,
                                      connect_timeout=self.settings.connect_timeout)
        if findings:
            raise AssertionError(
                f"plugin {name!r}: the models ({plugin.models}) and the migrations at head "
                f"differ; write a revision (migrator revision --plugin {name} --autogenerate "
                "-m MESSAGE) or fix the models:\n"
                + "\n".join(f"  {f.message}" for f in findings))


@contextlib.contextmanager
def _step(where: str, what: str) -> Iterator[None]:
    from migrator.errors import MigratorError

    try:
        yield
    except MigratorError as exc:
        raise AssertionError(f"{where}: {what} failed: {exc}") from exc


class PluginTreeChecks:
    """Subclass it in a test module to get the three checks as tests::

        class TestMigrations(PluginTreeChecks):
            plugins = ("panels", "core")   # default: every discovered plugin

    Each test runs on a database of its own.
    """

    plugins: Sequence[str] = ()

    def test_stairway(self, migrator_checks: MigratorChecks, migrator_plugin: str) -> None:
        migrator_checks.stairway(migrator_plugin)

    def test_round_trip(self, migrator_checks: MigratorChecks, migrator_plugin: str) -> None:
        migrator_checks.round_trip(migrator_plugin)

    def test_models_match_migrations(self, migrator_checks: MigratorChecks,
                                     migrator_plugin: str) -> None:
        if not migrator_checks.plugin(migrator_plugin).models:
            pytest.skip(f"plugin {migrator_plugin!r} names no models in plugin.toml")
        migrator_checks.models_match(migrator_plugin)


# -- pytest hooks and fixtures ------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(_INI_MIGRATIONS_DIR, "migrator: the plugin trees (default: "
                  "$MIGRATOR_MIGRATIONS_DIR, else plugin_migrations beside the ini file)",
                  default="")


def migrations_dir(config: pytest.Config) -> Path:
    """The plugin trees for this test run (see the module docstring)."""
    base = config.inipath.parent if config.inipath else config.rootpath
    configured = str(config.getini(_INI_MIGRATIONS_DIR) or "")
    configured = configured or os.environ.get("MIGRATOR_MIGRATIONS_DIR", "")
    return base / (configured or "plugin_migrations")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run `PluginTreeChecks` tests once per plugin (`plugins`, else every discovered one)."""
    if "migrator_plugin" not in metafunc.fixturenames:
        return
    names = list(getattr(metafunc.cls, "plugins", ()) or ())
    if not names:
        from migrator import discovery

        names = [p.name for p in discovery.discover(migrations_dir(metafunc.config))]
    metafunc.parametrize("migrator_plugin", names, ids=names)


@pytest.fixture(scope="session")
def migrator_server_url() -> Iterator[str]:
    """The PostgreSQL server for the tests: MIGRATOR_TEST_DATABASE_URL, else an embedded
    server started for this session (per xdist worker) and stopped after it."""
    if url := os.environ.get(TEST_DATABASE_VARIABLE):
        yield url
        return
    from migrator import embedded

    workdir = Path(tempfile.mkdtemp(prefix="migrator-pytest-"))
    try:
        try:
            started = embedded.ensure_server(workdir / "pgdata")
        except RuntimeError as exc:
            pytest.fail(f"no test database: set {TEST_DATABASE_VARIABLE} or install "
                        f"migrator[embedded] ({exc})", pytrace=False)
        yield started
    finally:
        embedded.stop_server(workdir / "pgdata")
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def migrator_database_url(migrator_server_url: str) -> Iterator[str]:
    """A new, empty database on the test server, dropped (with its connections) after the
    test."""
    import psycopg
    from psycopg import sql

    server = DatabaseUrl.parse(migrator_server_url, source=TEST_DATABASE_VARIABLE)
    name = f"migrator_test_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(server.conninfo, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield _with_database(migrator_server_url, name)
    finally:
        with psycopg.connect(server.conninfo, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)))


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


@pytest.fixture
def migrator_migrations_dir(request: pytest.FixtureRequest) -> Path:
    """The plugin trees under test."""
    return migrations_dir(request.config)


@pytest.fixture
def migrator_settings(migrator_database_url: str, migrator_migrations_dir: Path,
                      tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings for the test's database and trees, as the `migrator` command would build
    them; runs write their summary to a file in tmp_path, never /dev/termination-log, and
    their events to the test's stderr."""
    monkeypatch.setenv("MIGRATOR_TERMINATION_LOG", str(tmp_path / "termination-log"))
    # migrator's events go to this test's stderr: an earlier test may have left structlog
    # writing to a stream that is closed now (capsys, typer's CliRunner).
    from migrator import logs

    logs.configure()
    return Settings(database_url=DatabaseUrl.parse(migrator_database_url, source="test"),
                    migrations_dir=migrator_migrations_dir, connect_timeout=10, lock_wait=60)


@pytest.fixture
def migrator_checks(migrator_settings: Settings) -> MigratorChecks:
    """The ready-made checks on a fresh database."""
    return MigratorChecks(migrator_settings)
