"""Randomised faults on a real PostgreSQL: connections terminated and processes killed at random
points of many upgrades, the server stopped and started mid-run, 32 runners at once.

After every fault the database must be consistent: each plugin at a revision boundary (its
tables and columns exactly those of the revision its version table names), `migrator.history`
holding exactly one `applied` row per revision up to that one, the backfill's rows updated at
most once and exactly as often as its checkpoint says; and a rerun reaches head.

The `inj_platform` tree: `inj_alpha` (two schema revisions, a backfill that counts each row's
updates, one more schema revision) and `inj_beta` (depends on inj_alpha: a foreign key into
it, then two schema revisions). Revisions pause `INJ_SLEEP` seconds (default 0.02) mid-way, so
faults land inside them too.

The randomised loops run the real command line (`migrator.cli.app`) in processes forked from a
preloaded `multiprocessing` forkserver, so an iteration pays for the run, not for importing
Alembic. `MIGRATOR_FAULT_SEED` and `MIGRATOR_FAULT_ITERATIONS` reproduce or lengthen them.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from multiprocessing.context import ForkServerContext
from pathlib import Path
from typing import Any

import psycopg
import pytest
from conftest import parse_json_lines, with_database
from helpers import fetch, version_of
from psycopg import sql

from migrator.embedded import ensure_server, stop_server

SEED = int(os.environ.get("MIGRATOR_FAULT_SEED", "20261123"))
ITERATIONS = int(os.environ.get("MIGRATOR_FAULT_ITERATIONS", "25"))
WINDOW = 0.6  # initial seconds after migrator's first connection in which a fault lands
DEADLINE = 60.0
CHAINS = {
    "inj_alpha": ["inj_alpha_0001", "inj_alpha_0002", "inj_alpha_0003", "inj_alpha_0004"],
    "inj_beta": ["inj_beta_0001", "inj_beta_0002", "inj_beta_0003"],
}
# tables of each plugin after its first k revisions
TABLES = {
    "inj_alpha": [set(), {"a1"}, {"a1", "a2"}, {"a1", "a2"}, {"a1", "a2", "a4"}],
    "inj_beta": [set(), {"b1"}, {"b1", "b2"}, {"b1", "b2", "b3"}],
}
ROWS = 300  # in inj_alpha.a1, each updated once by the backfill
Tree = Callable[[str], Path]


# -- running the command line in forked processes ---------------------------------------------


def _cli_child(args: list[str], env: dict[str, str], cwd: str, log: str) -> None:
    """In a process forked from the preloaded server: run the CLI, output to `log`."""
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    descriptor = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(descriptor, 1)
    os.dup2(descriptor, 2)
    sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115 - lives until _exit
    sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
    from migrator.cli import app

    code = 0
    try:
        app(args=args, prog_name="migrator")
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:  # a traceback is a finding: let it show in the log
        import traceback

        traceback.print_exc()
        code = 70
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


@dataclass
class Run:
    process: multiprocessing.process.BaseProcess
    log: Path

    @property
    def pid(self) -> int:
        assert self.process.pid is not None
        return self.process.pid

    def wait(self) -> tuple[int, str]:
        self.process.join(DEADLINE)
        if self.process.exitcode is None:
            self.process.kill()
            self.process.join()
            pytest.fail(f"migrator did not finish within {DEADLINE}s:\n{self.output()}")
        return self.process.exitcode, self.output()

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


@pytest.fixture(scope="module")
def forkserver() -> ForkServerContext:
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["migrator.cli", "migrator.commands", "migrator.runner",
                                    "migrator.backfill_run", "migrator.backfill_sql", "alembic",
                                    "alembic.runtime.migration", "alembic.operations",
                                    "sqlalchemy", "sqlalchemy.dialects.postgresql",
                                    "rich.console", "rich.table",
                                    __name__])  # _cli_child's module, with pytest
    return context


@pytest.fixture
def launch(forkserver: ForkServerContext, tmp_path: Path, cli_env: dict[str, str]
           ) -> Iterator[Callable[..., Run]]:
    started: list[Run] = []

    def start(*args: str, **env: str) -> Run:
        log = tmp_path / f"run-{len(started)}.log"
        process = forkserver.Process(target=_cli_child, args=(
            [str(a) for a in args], {**cli_env, **env}, str(tmp_path), str(log)))
        process.start()
        run = Run(process, log)
        started.append(run)
        return run

    yield start
    for run in started:
        if run.process.is_alive():
            run.process.kill()
        run.process.join()


# -- reading the database's state -------------------------------------------------------------


def migrator_backends(url: str) -> list[int]:
    rows = fetch(url, "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                 "AND pid <> pg_backend_pid() AND application_name LIKE 'migrator@%%'")
    return [row[0] for row in rows]


def wait_for_backends(url: str, present: bool, run: Run | None = None) -> None:
    """Until migrator has a connection (present) or none is left (orphans of a killed run
    finish their statement first)."""
    deadline = time.monotonic() + DEADLINE
    while bool(migrator_backends(url)) != present:
        if run is not None and not run.process.is_alive():
            return
        if time.monotonic() > deadline:
            pytest.fail(f"migrator backends still {'absent' if present else 'present'}")
        time.sleep(0.005 if present else 0.02)


def state_problems(url: str) -> list[str]:
    """Everything inconsistent, read in one snapshot: each plugin at a revision boundary,
    history agreeing with the version tables, the backfill exactly-once."""
    problems: list[str] = []
    with psycopg.connect(url) as conn:
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")

        def rows(query: str | sql.Composable, params: Any = None) -> list[Any]:
            return conn.execute(query, params).fetchall()

        has_history = rows("SELECT to_regclass('migrator.history') IS NOT NULL")[0][0]
        has_progress = rows("SELECT to_regclass('migrator.backfill_progress') IS NOT NULL")[0][0]
        at: dict[str, int] = {}
        for plugin, chain in CHAINS.items():
            version: list[str] = []
            if rows("SELECT to_regclass(%s) IS NOT NULL", (f"{plugin}.alembic_version",))[0][0]:
                version = [r[0] for r in rows(sql.SQL("SELECT version_num FROM {}").format(
                    sql.Identifier(plugin, "alembic_version")))]
            if len(version) > 1 or (version and version[0] not in chain):
                problems.append(f"{plugin}: version table holds {version}")
                continue
            k = chain.index(version[0]) + 1 if version else 0
            at[plugin] = k
            history = [r[0] for r in rows(
                "SELECT revision FROM migrator.history WHERE plugin = %s AND direction = 'up' "
                "AND outcome = 'applied' ORDER BY id", (plugin,))] if has_history else []
            if history != chain[:k]:
                problems.append(f"{plugin}: at {version}, applied history {history}")
            tables = {r[0] for r in rows("SELECT tablename FROM pg_tables WHERE schemaname = %s "
                                         "AND tablename <> 'alembic_version'", (plugin,))}
            if tables != TABLES[plugin][k]:
                problems.append(f"{plugin}: at {version}, tables {sorted(tables)}")
            table, added = ("a1", "note") if plugin == "inj_alpha" else ("b1", "x")
            columns = {r[0] for r in rows("SELECT column_name FROM information_schema.columns "
                                          "WHERE table_schema = %s AND table_name = %s",
                                          (plugin, table))}
            if k and (added in columns) != (k >= 2):
                problems.append(f"{plugin}: at {version}, {table} columns {sorted(columns)}")
        index = rows("SELECT count(*) FROM pg_indexes WHERE schemaname = 'inj_beta' "
                     "AND indexname = 'b1_a_id'")[0][0]
        if index != (at.get("inj_beta", 0) >= 3):
            problems.append(f"inj_beta: at {at.get('inj_beta')}, index b1_a_id count {index}")
        if at.get("inj_beta", 0) and at.get("inj_alpha") != 4:
            problems.append(f"inj_beta ran before inj_alpha reached head: {at}")
        if at.get("inj_alpha", 0):
            counts = dict(rows("SELECT n, count(*) FROM inj_alpha.a1 GROUP BY n"))
            progress = rows("SELECT status, rows_done FROM migrator.backfill_progress WHERE "
                            "plugin = 'inj_alpha'") if has_progress else []
            done = progress[0][1] if progress else 0
            if set(counts) - {0, 1} or counts.get(1, 0) != done:
                problems.append(f"backfill: rows by update count {counts}, checkpoint {progress}")
            if at["inj_alpha"] >= 3 and (counts != {1: ROWS} or progress != [("done", ROWS)]):
                problems.append(f"backfill stamped but {counts}, {progress}")
    return problems


def at_head(url: str) -> bool:
    try:
        return all(fetch(url, sql.SQL("SELECT version_num FROM {}").format(
            sql.Identifier(plugin, "alembic_version"))) == [(chain[-1],)]
            for plugin, chain in CHAINS.items())
    except psycopg.errors.UndefinedTable:
        return False


def boundary(url: str) -> str:
    """Where the plugins are, like `alpha 2/4, beta 0/3`."""
    at = []
    for plugin, chain in CHAINS.items():
        try:
            version = fetch(url, sql.SQL("SELECT version_num FROM {}").format(
                sql.Identifier(plugin, "alembic_version")))
        except psycopg.errors.UndefinedTable:
            version = []
        k = chain.index(version[0][0]) + 1 if version else 0
        at.append(f"{plugin.removeprefix('inj_')} {k}/{len(chain)}")
    return ", ".join(at)


def reset(url: str) -> None:
    """Back to an empty database, cheaper than a new one."""
    fetch(url, "DROP SCHEMA IF EXISTS inj_beta, inj_alpha, migrator CASCADE")


# -- the randomised loops -----------------------------------------------------------------------


@dataclass
class Figures:
    kind: str
    iterations: int = 0
    faults: int = 0
    fresh_starts: int = 0
    exits: Counter[int] = field(default_factory=Counter)
    hit: Counter[str] = field(default_factory=Counter)  # what each fault hit
    left_at: Counter[str] = field(default_factory=Counter)  # boundaries faults left
    inconsistencies: list[str] = field(default_factory=list)

    def line(self) -> str:
        return (f"fault injection ({self.kind}, seed {SEED}): {self.iterations} iterations, "
                f"{self.faults} faults injected (hitting {dict(self.hit)}), "
                f"{self.fresh_starts} fresh starts, exits {dict(sorted(self.exits.items()))}, "
                f"boundaries left {dict(sorted(self.left_at.items()))}, "
                f"{len(self.inconsistencies)} inconsistencies")


Inject = Callable[[Run, random.Random], str | None]  # what the fault hit, None: it missed


def fault_loop(kind: str, url: str, migrations: Path, launch: Callable[..., Run],
               allowed_exits: Sequence[int], inject: Inject) -> Figures:
    """ITERATIONS upgrades, each hit by `inject` at a random moment, the state checked after
    each; the window adapts so that most faults land while the run is still going."""
    rng = random.Random(f"{SEED}-{kind}")
    figures = Figures(kind)
    window = WINDOW
    for iteration in range(ITERATIONS):
        if at_head(url):
            reset(url)
            figures.fresh_starts += 1
        run = launch("--database-url", url, "--migrations-dir", migrations, "upgrade")
        wait_for_backends(url, present=True, run=run)
        delay = rng.uniform(0, window)
        time.sleep(delay)
        hit = inject(run, rng)
        code, output = run.wait()
        if hit == "process" and code != -signal.SIGKILL:
            hit = None  # it exited between the check and the kill
        if hit is not None:
            figures.faults += 1
            figures.hit[hit] += 1
        window = min(window * 1.1, 2.0) if hit else max(window * 0.8, 0.1)
        figures.iterations += 1
        figures.exits[code] += 1
        where = f"iteration {iteration} (delay {delay:.3f}s, exit {code})"
        errors = [line for line in output.splitlines() if line.startswith("migrator: error:")]
        if code not in allowed_exits or "Traceback" in output or (code > 0 and len(errors) != 1):
            figures.inconsistencies.append(f"{where}: unexpected ending:\n{output[-3000:]}")
        wait_for_backends(url, present=False)
        figures.inconsistencies += [f"{where}: {p}" for p in state_problems(url)]
        if hit:
            figures.left_at[boundary(url)] += 1
    final = launch("--database-url", url, "--migrations-dir", migrations, "upgrade")
    code, output = final.wait()
    assert code == 0, output
    figures.inconsistencies += [f"final rerun: {p}" for p in state_problems(url)]
    if not at_head(url):
        figures.inconsistencies.append("final rerun did not reach head")
    checked = launch("--database-url", url, "--migrations-dir", migrations, "check")
    code, output = checked.wait()
    if code != 0:
        figures.inconsistencies.append(f"check after the final rerun: exit {code}\n{output}")
    print(figures.line())
    return figures


def terminate_some(url: str) -> Inject:
    """pg_terminate_backend of one of migrator's connections (of all of them, one time in
    five); says which: a run opens its lock connection first, then its work connection, then
    any backfill connection."""
    roles = ("lock connection", "work connection")

    def inject(run: Run, rng: random.Random) -> str | None:
        backends = [row[0] for row in fetch(
            url, "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND application_name LIKE 'migrator@%%' "
            "ORDER BY backend_start, pid")]
        if not backends or not run.process.is_alive():
            return None
        victims = backends if rng.random() < 0.2 else [rng.choice(backends)]
        done = fetch(url, "SELECT bool_or(pg_terminate_backend(pid)) FROM unnest(%s::int[]) "
                     "AS pid", (victims,))
        if not done[0][0]:
            return None
        if len(victims) > 1:
            return "every connection"
        rank = backends.index(victims[0])
        return roles[rank] if rank < len(roles) else "backfill connection"

    return inject


def kill_9(run: Run, _rng: random.Random) -> str | None:
    if not run.process.is_alive():
        return None
    os.kill(run.pid, signal.SIGKILL)
    return "process"


def test_connections_terminated_at_random_points_leave_a_consistent_database(
    database_url: str, tree: Tree, launch: Callable[..., Run],
) -> None:
    """pg_terminate_backend of one (or every) migrator connection at a random moment of each
    upgrade: the run exits 4 (or 0 when the backfill reconnected, or it had finished), the
    database is consistent after each, and a rerun reaches head with `check` clean."""
    figures = fault_loop("pg_terminate_backend", database_url, tree("inj_platform"), launch,
                         (0, 4), terminate_some(database_url))
    assert figures.inconsistencies == [], "\n\n".join(figures.inconsistencies[:5])
    assert figures.faults >= ITERATIONS // 2, figures.line()


def test_kill_9_at_random_points_leaves_a_consistent_database(
    database_url: str, tree: Tree, launch: Callable[..., Run],
) -> None:
    """SIGKILL at a random moment of each upgrade: the database is consistent after each, and
    a rerun reaches head with `check` clean."""
    figures = fault_loop("kill -9", database_url, tree("inj_platform"), launch,
                         (0, -signal.SIGKILL), kill_9)
    assert figures.inconsistencies == [], "\n\n".join(figures.inconsistencies[:5])
    assert figures.faults >= ITERATIONS // 2, figures.line()


# -- many runners -------------------------------------------------------------------------------


def test_32_runners_at_once_on_a_fresh_database_apply_each_revision_once(
    database_url: str, tree: Tree, launch: Callable[..., Run],
) -> None:
    """32 `migrator upgrade` processes started together on an empty database: all exit 0,
    each revision (and each backfill row) is applied exactly once, and some waited."""
    migrations = tree("inj_platform")
    runs = [launch("--database-url", database_url, "--migrations-dir", migrations, "upgrade")
            for _ in range(32)]
    applied: Counter[str] = Counter()
    waited = 0
    for run in runs:
        code, output = run.wait()
        assert code == 0, output
        assert "Traceback" not in output
        events = parse_json_lines(output)
        applied.update(e["revision"] for e in events if e["event"] == "revision.applied")
        waited += any(e["event"] == "lock.waiting" for e in events)
    assert applied == Counter(rev for chain in CHAINS.values() for rev in chain)
    assert waited, "no runner waited for a lock: the runs did not overlap"
    assert state_problems(database_url) == []
    assert at_head(database_url)


# -- the server stopped and started -------------------------------------------------------------


@pytest.fixture
def own_server() -> Iterator[tuple[Path, str]]:
    """An embedded server of this test alone (in both CI modes), to stop and start at will."""
    workdir = Path(tempfile.mkdtemp(prefix="migrator-inj-pg-"))
    pgdata = workdir / "pgdata"
    try:
        url = ensure_server(pgdata)
        name = "inj_restart"
        fetch(url, sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        yield pgdata, with_database(url, name)
    finally:
        stop_server(pgdata)
        shutil.rmtree(workdir, ignore_errors=True)


def test_server_stopped_mid_revision_exits_4_and_a_rerun_after_restart_reaches_head(
    own_server: tuple[Path, str], tree: Tree, start_cli: Any, run_cli: Any,
    cli_env: dict[str, str],
) -> None:
    """The server shut down (fast) while a revision runs: migrator exits 4 at once with one
    line, nothing is half-applied, and once the server is back a rerun reaches head."""
    pgdata, url = own_server
    env = {**cli_env, "MIGRATOR_DATABASE_URL": url,
           "MIGRATOR_MIGRATIONS_DIR": str(tree("inj_platform")), "INJ_SLEEP": "30"}
    process = start_cli("upgrade", env=env)
    deadline = time.monotonic() + DEADLINE
    while not fetch(url, "SELECT 1 FROM pg_stat_activity WHERE query LIKE 'SELECT pg_sleep%%' "
                    "AND application_name LIKE 'migrator@%%'"):
        assert process.poll() is None, process.communicate()[1]
        assert time.monotonic() < deadline, "migrator never reached a revision"
        time.sleep(0.02)
    stop_server(pgdata)
    _stdout, stderr = process.communicate(timeout=DEADLINE)
    assert process.returncode == 4, stderr
    assert "Traceback" not in stderr
    [line] = [x for x in stderr.splitlines() if x.startswith("migrator: error:")]
    assert "'inj_alpha' revision inj_alpha_0001" in line
    assert "lost the database connection" in line

    ensure_server(pgdata)
    assert state_problems(url) == []
    assert fetch(url, "SELECT version_num FROM inj_alpha.alembic_version") == []
    rerun = run_cli("upgrade", env={**env, "INJ_SLEEP": "0"})
    assert rerun.returncode == 0, rerun.stderr
    assert at_head(url) and state_problems(url) == []


def test_server_down_at_start_is_waited_for_and_the_run_succeeds(
    own_server: tuple[Path, str], tree: Tree, start_cli: Any, cli_env: dict[str, str],
) -> None:
    """Started while the server is down (an init container beside a starting database),
    migrator retries connecting (`db.connect_retry`) and succeeds once the server is up."""
    pgdata, url = own_server
    stop_server(pgdata)
    env = {**cli_env, "MIGRATOR_DATABASE_URL": url,
           "MIGRATOR_MIGRATIONS_DIR": str(tree("inj_platform")), "INJ_SLEEP": "0"}
    process = start_cli("--connect-timeout", "60", "upgrade", env=env)
    time.sleep(1.5)
    assert process.poll() is None, process.communicate()[1]
    ensure_server(pgdata)
    _stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr
    assert any(e["event"] == "db.connect_retry" for e in parse_json_lines(stderr)), stderr
    assert at_head(url) and state_problems(url) == []


# -- a concurrent index build cut short ---------------------------------------------------------


def test_a_concurrent_index_build_cut_short_is_dropped_and_rebuilt_by_the_rerun(
    database_url: str, tree: Tree, run_cli: Any, start_cli: Any, cli_env: dict[str, str],
) -> None:
    """CREATE INDEX CONCURRENTLY terminated while it waits for an old snapshot leaves an
    INVALID index: the run exits 4 and stamps nothing; `check` names the leftover; the rerun
    drops it (`IF NOT EXISTS` would otherwise skip it), builds it again, valid, and stamps;
    `check` is then clean."""
    env = {**cli_env, "MIGRATOR_DATABASE_URL": database_url,
           "MIGRATOR_MIGRATIONS_DIR": str(tree("inj_concurrent_index"))}
    first = run_cli("upgrade", "--plugin", "inj_index", "--to", "inj_index_0001", env=env)
    assert first.returncode == 0, first.stderr
    invalid = ("SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
               "WHERE NOT i.indisvalid AND c.relnamespace = 'inj_index'::regnamespace")
    with psycopg.connect(database_url) as holder:
        holder.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        holder.execute("SELECT count(*) FROM pg_class")  # an old snapshot the build waits for
        process = start_cli("upgrade", env=env)
        deadline = time.monotonic() + DEADLINE
        # In its wait for old snapshots, the index exists and is INVALID.
        while not (building := fetch(database_url, (
                "SELECT pid FROM pg_stat_activity WHERE query LIKE 'CREATE INDEX CONCURRENTLY%%' "
                "AND datname = current_database()"))) or not fetch(database_url, invalid):
            assert process.poll() is None, process.communicate()[1]
            assert time.monotonic() < deadline
            time.sleep(0.02)
        fetch(database_url, "SELECT pg_terminate_backend(%s)", (building[0][0],))
        _stdout, stderr = process.communicate(timeout=DEADLINE)
    assert process.returncode == 4, stderr
    assert version_of(database_url, "inj_index") == ["inj_index_0001"]

    found = run_cli("check", "--format", "json", env=env)
    assert found.returncode == 5, found.stderr
    [finding] = json.loads(found.stdout)["findings"]
    assert (finding["kind"], finding["plugin"], finding["object"]) == (
        "invalid_index", "inj_index", "inj_index.ix_items_code")

    rerun = run_cli("upgrade", env=env)
    assert rerun.returncode == 0, rerun.stderr
    assert '"index.invalid_dropped"' in rerun.stderr
    assert fetch(database_url, invalid) == []
    assert fetch(database_url, "SELECT count(*) FROM pg_indexes WHERE schemaname = 'inj_index' "
                 "AND indexname = 'ix_items_code'") == [(1,)]
    assert version_of(database_url, "inj_index") == ["inj_index_0002"]
    clean = run_cli("check", env=env)
    assert clean.returncode == 0, clean.stdout + clean.stderr
