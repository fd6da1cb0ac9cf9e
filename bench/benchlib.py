"""Helpers shared by bench/fleet.py and bench/run.py: URLs, scratch databases, catalog snapshots.

Not imported by any contender: the processes being timed load none of this.
"""

from __future__ import annotations

import itertools
import os
import platform
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

Snapshot = dict[str, list[tuple[Any, ...]]]

BENCH_DIR = Path(__file__).resolve().parent
PLAIN_ALEMBIC = BENCH_DIR / "plain_alembic.py"
_counter = itertools.count()


def timed_process(argv: list[str], *, env: dict[str, str] | None = None, stdout: Any = None,
                  stderr: Any = None, timeout: float = 1800.0,
                  cwd: str | None = None) -> tuple[int, float]:
    """Run one whole process; return its exit code and wall-clock seconds.

    `subprocess.run(..., timeout=...)` waits by polling with sleeps that grow to 50 ms, which
    rounds every sample up to the next step of a 50 ms ladder (a 230 ms process measures 263 ms).
    This waits in a blocking `waitpid` instead and enforces the timeout from a watchdog thread.
    """
    started = time.perf_counter()
    process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr,
                               env=env, cwd=cwd)
    watchdog = threading.Timer(timeout, process.kill)
    watchdog.start()
    try:
        returncode = process.wait()
    finally:
        watchdog.cancel()
    return returncode, time.perf_counter() - started


def libpq_url(url: str) -> str:
    """A URL psql and psycopg accept (drops SQLAlchemy's `+driver` suffix)."""
    parts = urlsplit(url)
    scheme = parts.scheme.split("+", 1)[0]
    if scheme == "postgres":
        scheme = "postgresql"
    return urlunsplit(parts._replace(scheme=scheme))


def with_database(url: str, dbname: str) -> str:
    return urlunsplit(urlsplit(libpq_url(url))._replace(path="/" + dbname))


def redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def psql_command(sql_file: Path, url: str) -> list[str]:
    # -X: ignore ~/.psqlrc so the floor does not depend on who runs it.
    return ["psql", "-X", "-1", "-q", "-v", "ON_ERROR_STOP=1", "-f", str(sql_file), url]


def plain_alembic_command(fleet: Path, url: str, python: str = sys.executable) -> list[str]:
    return [python, str(PLAIN_ALEMBIC), "--database-url", url, "--migrations-dir", str(fleet)]


class Admin:
    """An autocommit connection to the maintenance database, for creating scratch databases."""

    def __init__(self, url: str) -> None:
        self.url = libpq_url(url)
        self.conn: psycopg.Connection[Any] | None = None

    def __enter__(self) -> Admin:
        self.conn = psycopg.connect(self.url, autocommit=True)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.conn is not None:
            self.conn.close()

    def _execute(self, query: sql.SQL | sql.Composed) -> None:
        assert self.conn is not None, "use Admin as a context manager"
        self.conn.execute(query)

    def create_database(self, label: str) -> tuple[str, str]:
        """Create an empty database; returns (name, url)."""
        name = f"bench_{label}_{os.getpid()}_{next(_counter)}"[:63].lower()
        self.drop_database(name)
        self._execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return name, with_database(self.url, name)

    def drop_database(self, name: str) -> None:
        drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
        self._execute(drop.format(sql.Identifier(name)))

    def checkpoint(self) -> bool:
        """Flush dirty buffers so a timed run does not pay for the previous one's writes."""
        try:
            self._execute(sql.SQL("CHECKPOINT"))
        except psycopg.errors.InsufficientPrivilege:
            return False
        return True

    @contextmanager
    def fresh_database(self, label: str) -> Iterator[str]:
        name, url = self.create_database(label)
        try:
            yield url
        finally:
            self.drop_database(name)


def server_version(url: str) -> str:
    with psycopg.connect(libpq_url(url)) as conn:
        row = conn.execute("select version()").fetchone()
    assert row is not None
    return str(row[0])


_CATALOG_QUERIES: dict[str, str] = {
    "tables": """
        select table_schema, table_name, table_type from information_schema.tables
        where table_schema = any(%(s)s) order by 1, 2""",
    "columns": """
        select table_schema, table_name, ordinal_position, column_name, data_type,
               character_maximum_length, is_nullable, column_default, is_identity,
               identity_generation
        from information_schema.columns where table_schema = any(%(s)s) order by 1, 2, 3""",
    "constraints": """
        select n.nspname, t.relname, c.conname, c.contype, pg_get_constraintdef(c.oid)
        from pg_constraint c
        join pg_namespace n on n.oid = c.connamespace
        join pg_class t on t.oid = c.conrelid
        where n.nspname = any(%(s)s) order by 1, 2, 3""",
    "indexes": """
        select schemaname, tablename, indexname, indexdef from pg_indexes
        where schemaname = any(%(s)s) order by 1, 2, 3""",
    "sequences": """
        select sequence_schema, sequence_name, data_type from information_schema.sequences
        where sequence_schema = any(%(s)s) order by 1, 2""",
}


def snapshot(url: str, schemas: list[str]) -> Snapshot:
    """The parts of the catalog a migration shapes, for the given schemas, plus version stamps."""
    snap: Snapshot = {}
    with psycopg.connect(libpq_url(url)) as conn:
        # Fixed search_path: pg_get_constraintdef / indexdef qualify names relative to it.
        conn.execute("set search_path to pg_catalog")
        for key, query in _CATALOG_QUERIES.items():
            snap[key] = [tuple(r) for r in conn.execute(query, {"s": schemas}).fetchall()]
        snap["versions"] = _versions(conn, schemas)
    return snap


def _versions(conn: psycopg.Connection[Any], schemas: list[str]) -> list[tuple[Any, ...]]:
    present = [
        r[0]
        for r in conn.execute(
            "select table_schema from information_schema.tables "
            "where table_name = 'alembic_version' and table_schema = any(%(s)s) order by 1",
            {"s": schemas},
        )
    ]
    if not present:
        return []
    query = sql.SQL(" union all ").join(
        sql.SQL("select {}::text, version_num from {}.alembic_version").format(
            sql.Literal(schema), sql.Identifier(schema)
        )
        for schema in present
    )
    return sorted(tuple(r) for r in conn.execute(query))


def read_versions(url: str, schemas: list[str]) -> Snapshot:
    """Only the version stamps (cheap enough to check after every timed run)."""
    with psycopg.connect(libpq_url(url)) as conn:
        return {"versions": _versions(conn, schemas)}


def check_heads(snap: Snapshot, heads: dict[str, str]) -> list[str]:
    """Every plugin stamped exactly at its head?"""
    found: dict[str, list[str]] = {}
    for schema, version in snap["versions"]:
        found.setdefault(schema, []).append(version)
    problems = []
    for name, head in heads.items():
        if found.get(name) != [head]:
            problems.append(f"{name}: alembic_version is {found.get(name)}, expected [{head!r}]")
    return problems


def diff_snapshots(a: Snapshot, b: Snapshot, label_a: str, label_b: str) -> list[str]:
    problems: list[str] = []
    for key in a:
        only_a = sorted(set(a[key]) - set(b.get(key, [])), key=repr)
        only_b = sorted(set(b.get(key, [])) - set(a[key]), key=repr)
        problems.extend(f"{key}: only in {label_a}: {row}" for row in only_a[:10])
        problems.extend(f"{key}: only in {label_b}: {row}" for row in only_b[:10])
    return problems


def machine_facts() -> dict[str, str]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "unknown"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count() or "unknown"),
        "memory": mem,
        "os": platform.platform(),
        "python": platform.python_version(),
    }


def package_versions(names: list[str]) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str] = {}
    for name in names:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


def write_section(path: Path, section: str, begin: str, end: str) -> None:
    """Put `section` (which starts with `begin` and ends with `end`) into the results file:
    in place of the marked section already there, else appended; other sections are kept."""
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    if begin in text and end in text:
        head, _, rest = text.partition(begin)
        _, _, tail = rest.partition(end)
        text = head + section + tail
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def index_until_settled(migrator: list[str], fleet_dir: Path,
                        env: dict[str, str] | None = None) -> None:
    """`migrator index` until the index's tree summary is trusted whole, as a pod start finds
    it: files and directories written within 2 s of indexing are not, until they are older."""
    from migrator.revision_index import RevisionIndex
    from migrator.tree_summary import summarised_trees

    deadline = time.monotonic() + 60
    while True:
        subprocess.run([*migrator, "--migrations-dir", str(fleet_dir), "index"], check=True,
                       capture_output=True, timeout=600, env=env)
        if summarised_trees(RevisionIndex.load(str(fleet_dir)), str(fleet_dir)) is not None:
            return
        if time.monotonic() > deadline:
            raise SystemExit(f"{fleet_dir}: index entries stay racy")
        time.sleep(0.05)
