"""Backfill benchmark: migrator.backfill against a single UPDATE, a chunked keyset loop and a
row-by-row loop, measuring throughput and the latency of concurrent traffic.

A table of N rows (default 1,000,000) with a `payload jsonb`; each contender fills the text
column `drug_name` from it. Contenders, each on a freshly built table (VACUUM ANALYZE and
CHECKPOINT before the clock starts), each a whole process timed from its start to its exit
(interpreter start-up and imports included), except the row-by-row loop:

- single UPDATE: `python` + psycopg running one statement, one transaction (the floor);
- chunked keyset loop: `python` + psycopg, the loop people write by hand: per batch, the
  10,000th next key (`ORDER BY id LIMIT 10000`), then `UPDATE ... WHERE id > a AND id <= b`,
  each statement autocommitted;
- row-by-row loop: one UPDATE per row, each its own transaction (the naive script), measured on
  the first `--naive-rows` rows (default 50,000) in this process and extrapolated;
- `migrator upgrade` running a revision that calls `backfill("events", set=...)` with default
  settings (its own `backfill.done` duration is shown in the notes).

During each contender, and for `--idle-seconds` with no backfill, a second process (this file
with `--traffic`) runs point SELECTs and UPDATEs on random ids at a fixed rate on two
connections, recording each statement's latency. It connects only to 127.0.0.1, and stops by
itself after `--traffic-max-seconds` or `--traffic-max-ops` even if nobody tells it to.

Writes the `backfill` section of bench/RESULTS.md (between its markers; other sections kept).

    .venv/bin/python bench/backfill_bench.py
    .venv/bin/python bench/backfill_bench.py --rows 200000 --naive-rows 10000 --results /tmp/r.md
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchlib  # a sibling module, not a package

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
WORK_DIR = BENCH_DIR / "work"
BEGIN = "<!-- backfill:begin -->"
END = "<!-- backfill:end -->"
DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/postgres"

# Targets (issue): with default settings, whole processes.
THROUGHPUT_TARGET = 0.85  # x the single UPDATE's rows/s
CHUNKED_TARGET = 1.0  # x the chunked keyset loop's rows/s
CHUNK = 10_000
WRITE_P99_TARGET = 3.0  # x the no-backfill write p99
WRITE_MAX_MS = 100.0
X = "\u00d7"  # the multiplication sign, kept out of the source for ruff

REVISION_0001 = '''"""create events

Revision ID: bench_0001
Revises:
"""

from alembic import op

revision = "bench_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE TABLE events (id bigint PRIMARY KEY, payload jsonb NOT NULL, "
               "drug_name text, touched integer NOT NULL DEFAULT 0)")


def downgrade() -> None:
    op.execute("DROP TABLE events")
'''

REVISION_0002 = '''"""backfill drug_name

Revision ID: bench_0002
Revises: bench_0001
"""

import json
import os

from migrator import backfill

revision = "bench_0002"
down_revision = "bench_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Every default, unless the benchmark's variant row passes keyword arguments.
    extra = json.loads(os.environ.get("BENCH_BACKFILL_KWARGS") or "{}")
    backfill("events", set="drug_name = payload->'drug'->>'name'", **extra)


def downgrade() -> None:
    pass
'''

FILL = """
INSERT INTO bench.events (id, payload)
SELECT g, jsonb_build_object(
    'drug', jsonb_build_object('name', 'drug-' || (g %% 5000), 'dose_um', g %% 100),
    'plate', 'P' || (g / 384), 'well', g %% 384, 'note', md5(g::text))
FROM generate_series(1, %s) AS g
"""


# The SQL contenders, each run as `python -c CODE URL`; each prints the rows it updated.
SINGLE_UPDATE = """
import sys, psycopg
with psycopg.connect(sys.argv[1], autocommit=True) as conn:
    print(conn.execute("UPDATE bench.events SET drug_name = payload->'drug'->>'name'").rowcount)
"""

CHUNKED_LOOP = f"""
import sys, psycopg
with psycopg.connect(sys.argv[1], autocommit=True) as conn:
    last, done = 0, 0
    while True:
        [upper] = conn.execute(
            "SELECT max(id) FROM (SELECT id FROM bench.events WHERE id > %s ORDER BY id "
            "LIMIT {CHUNK}) AS batch", (last,)).fetchone()
        if upper is None:
            break
        done += conn.execute(
            "UPDATE bench.events SET drug_name = payload->'drug'->>'name' "
            "WHERE id > %s AND id <= %s", (last, upper)).rowcount
        last = upper
    print(done)
"""


@contextlib.contextmanager
def private_server(port: int) -> Iterator[str]:
    """A throwaway PostgreSQL cluster of the installed server's version on 127.0.0.1:`port`,
    stock settings, removed afterwards: no other database's CREATE/DROP DATABASE (each forces
    an immediate checkpoint on PostgreSQL 15) lands in the middle of a measurement."""
    bindir = Path(subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True,
                                 check=False).stdout.strip() or "/nonexistent")
    if not (bindir / "initdb").exists():
        found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
        if not found:
            raise SystemExit("--private-server: no initdb found (pg_config, /usr/lib/postgresql)")
        bindir = found[-1].parent
    datadir = Path(tempfile.mkdtemp(prefix="bench-backfill-pg-"))
    as_owner: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        subprocess.run(["chown", "postgres:postgres", str(datadir)], check=True)
        as_owner = ["runuser", "-u", "postgres", "--"]
    pg_ctl = [*as_owner, str(bindir / "pg_ctl"), "-D", str(datadir)]
    subprocess.run([*as_owner, str(bindir / "initdb"), "-D", str(datadir), "-U", "postgres",
                    "--auth=trust", "-E", "UTF8"], check=True, capture_output=True)
    options = f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={datadir}"
    subprocess.run([*pg_ctl, "-o", options, "-l", str(datadir / "log"), "-w", "start"],
                   check=True, capture_output=True)
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*pg_ctl, "-m", "fast", "-w", "stop"], check=False, capture_output=True)
        shutil.rmtree(datadir, ignore_errors=True)


def log(message: str) -> None:
    print(f"[backfill-bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- the concurrent traffic (a separate process) ------------------------------------------------


def traffic_main(args: argparse.Namespace) -> int:
    """Point SELECTs on one connection, point UPDATEs on another, each at rate/2 per second on
    a fixed schedule; one JSON line per statement to stdout: [kind, unix time, latency_ms]."""
    host = urlsplit(args.traffic).hostname
    if host != "127.0.0.1":
        print(f"traffic: refusing to connect to {host!r}; only 127.0.0.1", file=sys.stderr)
        return 2
    stop_file = Path(args.stop_file)
    deadline = time.monotonic() + args.traffic_max_seconds
    budget = threading.Semaphore(args.traffic_max_ops)
    lock = threading.Lock()

    def worker(kind: str, seed: int) -> None:
        rng = random.Random(seed)
        interval = 2.0 / args.rate
        with psycopg.connect(args.traffic, autocommit=True,
                             application_name=f"bench-traffic-{kind}") as conn:
            statement = ("SELECT payload FROM bench.events WHERE id = %s" if kind == "read"
                         else "UPDATE bench.events SET touched = touched + 1 WHERE id = %s")
            conn.execute(statement, (1,))  # prepare the connection before the clock
            next_at = time.monotonic()
            while time.monotonic() < deadline and not stop_file.exists():
                if not budget.acquire(blocking=False):
                    return
                at = time.time()
                begin = time.perf_counter()
                conn.execute(statement, (rng.randint(1, args.rows),))
                latency = (time.perf_counter() - begin) * 1000
                with lock:
                    print(json.dumps([kind, round(at, 4), round(latency, 3)]), flush=True)
                next_at += interval
                pause = next_at - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                else:
                    next_at = time.monotonic()  # fell behind (a blocked write): no burst after

    threads = [threading.Thread(target=worker, args=(kind, seed), daemon=True)
               for kind, seed in (("read", 1), ("write", 2))]
    print(json.dumps(["ready", 0, 0]), flush=True)
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=args.traffic_max_seconds + 30)
    return 0


class Traffic:
    """The traffic process, started before a contender and stopped after it."""

    def __init__(self, url: str, rows: int, args: argparse.Namespace, label: str) -> None:
        self.stop_file = Path(tempfile.mkstemp(prefix="bench-traffic-stop-")[1])
        self.stop_file.unlink()
        self.output = WORK_DIR / "logs" / f"backfill-traffic-{label}.jsonl"
        self.output.parent.mkdir(parents=True, exist_ok=True)
        self.handle = self.output.open("w")
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--traffic", url, "--rows", str(rows),
             "--rate", str(args.rate), "--stop-file", str(self.stop_file),
             "--traffic-max-seconds", str(args.traffic_max_seconds),
             "--traffic-max-ops", str(args.traffic_max_ops)],
            stdout=self.handle, stderr=subprocess.PIPE, text=True)
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.output.read_text().strip():
                time.sleep(1.0)  # let both connections settle into their schedule
                return
            if self.process.poll() is not None:
                raise SystemExit(f"traffic process exited: {self.process.stderr.read()}")
            time.sleep(0.05)
        raise SystemExit("traffic process never got ready")

    def stop(self) -> list[list[Any]]:
        self.stop_file.touch()
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.handle.close()
        self.stop_file.unlink(missing_ok=True)
        return [json.loads(line) for line in self.output.read_text().splitlines()
                if line.strip()]


# -- contenders --------------------------------------------------------------------------------


@dataclass
class Outcome:
    name: str
    rows: int  # rows the contender updated
    seconds: float  # time for those rows
    extrapolated_seconds: float  # for all N rows
    wall_seconds: float | None = None
    note: str = ""
    reads: list[float] = field(default_factory=list)
    writes: list[float] = field(default_factory=list)

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0


def reset_table(url: str, rows: int) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("TRUNCATE bench.events")
        conn.execute("DELETE FROM migrator.backfill_progress")
        conn.execute("UPDATE bench.alembic_version SET version_num = 'bench_0001'")
        conn.execute(FILL, (rows,))
        conn.execute("VACUUM (ANALYZE, FREEZE) bench.events")
        with contextlib.suppress(psycopg.errors.InsufficientPrivilege):
            conn.execute("CHECKPOINT")


def check_filled(url: str, expect: int) -> None:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM bench.events WHERE drug_name IS NOT NULL "
                           "AND drug_name = payload->'drug'->>'name'").fetchone()
    assert row is not None
    if row[0] != expect:
        raise SystemExit(f"expected {expect} rows filled, found {row[0]}")


def with_traffic(url: str, rows: int, args: argparse.Namespace, label: str,
                 run: Any) -> Outcome:
    traffic = Traffic(url, rows, args, label)
    begin = time.time()
    try:
        outcome: Outcome = run()
    finally:
        end = time.time()
        samples = traffic.stop()
    # Only the statements that started while the contender ran.
    for kind, at, latency in samples:
        if kind in ("read", "write") and begin <= at <= end:
            (outcome.reads if kind == "read" else outcome.writes).append(latency)
    return outcome


def idle(url: str, args: argparse.Namespace) -> Outcome:
    def run() -> Outcome:
        time.sleep(args.idle_seconds)
        return Outcome("no backfill (traffic alone)", 0, args.idle_seconds, 0.0)
    return with_traffic(url, args.rows, args, "idle", run)


def sql_process(url: str, args: argparse.Namespace, label: str, name: str,
                code: str) -> Outcome:
    """A contender that is one `python -c` process (start-up included in its time)."""
    def run() -> Outcome:
        with tempfile.TemporaryFile("w+") as out:
            returncode, seconds = benchlib.timed_process([sys.executable, "-c", code, url],
                                                         stdout=out, stderr=out, timeout=600)
            out.seek(0)
            output = out.read()
        if returncode != 0:
            raise SystemExit(f"{name} exited {returncode}: {output}")
        done = int(output.split()[-1])
        return Outcome(name, done, seconds, seconds, wall_seconds=seconds)
    outcome = with_traffic(url, args.rows, args, label, run)
    check_filled(url, args.rows)
    return outcome


def single_update(url: str, args: argparse.Namespace) -> Outcome:
    return sql_process(url, args, "single-update", "single `UPDATE` (one transaction)",
                       SINGLE_UPDATE)


def chunked_loop(url: str, args: argparse.Namespace) -> Outcome:
    return sql_process(url, args, "chunked", f"chunked keyset loop ({CHUNK:,} rows a batch)",
                       CHUNKED_LOOP)


def naive_loop(url: str, args: argparse.Namespace) -> Outcome:
    limit = min(args.naive_rows, args.rows)

    def run() -> Outcome:
        with psycopg.connect(url, autocommit=True) as conn:
            begin = time.perf_counter()
            done = 0
            for key in range(1, limit + 1):
                conn.execute("UPDATE bench.events SET drug_name = payload->'drug'->>'name' "
                             "WHERE id = %s", (key,))
                done += 1
                if time.perf_counter() - begin > args.naive_max_seconds:
                    break
            seconds = time.perf_counter() - begin
        return Outcome("row-by-row loop (one transaction per row)", done, seconds,
                       seconds * args.rows / done,
                       note=f"{done:,} rows measured, time extrapolated to {args.rows:,}")
    outcome = with_traffic(url, args.rows, args, "naive", run)
    check_filled(url, outcome.rows)
    return outcome


def migrator_backfill(url: str, tree: Path, args: argparse.Namespace,
                      kwargs: dict[str, Any] | None = None) -> Outcome:
    label = "migrator" if not kwargs else "migrator-variant"
    events_log = WORK_DIR / "logs" / f"backfill-{label}.log"

    def run() -> Outcome:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MIGRATOR_")}
        env.update(MIGRATOR_LOG_FORMAT="json", MIGRATOR_DATABASE_URL=url,
                   MIGRATOR_MIGRATIONS_DIR=str(tree),
                   BENCH_BACKFILL_KWARGS=json.dumps(kwargs or {}),
                   PYTHONPATH=os.pathsep.join(filter(None, [str(REPO_DIR),
                                                            env.get("PYTHONPATH")])))
        with events_log.open("w") as sink:
            returncode, wall = benchlib.timed_process(
                [sys.executable, "-m", "migrator", "upgrade"], env=env, stdout=sink,
                stderr=sink, timeout=600)
        if returncode != 0:
            raise SystemExit(f"migrator exited {returncode}; see {events_log}")
        events = [json.loads(line) for line in events_log.read_text().splitlines()
                  if line.startswith("{")]
        [done] = [e for e in events if e.get("event") == "backfill.done"]
        batches = [e for e in events if e.get("event") == "backfill.batch"]
        sizes = [e["batch_size"] for e in batches]
        ms = [e["ms"] for e in batches]
        walks = sorted({e.get("walk", "keyset") for e in batches})
        note = (f"backfill.done {done['seconds']:.2f} s; {'/'.join(walks)}; "
                f"{len(batches)} batches; size {sizes[0]:,} first, median "
                f"{int(statistics.median(sizes)):,}, max {max(sizes):,}; batch ms median "
                f"{statistics.median(ms):.0f}, max {max(ms):.0f}")
        name = "`migrator.backfill`, default settings" if not kwargs else (
            "`migrator.backfill`, " + ", ".join(f"`{k}={v!r}`" for k, v in kwargs.items()))
        return Outcome(name, done["rows_done"], wall, wall, wall_seconds=wall, note=note)
    outcome = with_traffic(url, args.rows, args, label, run)
    check_filled(url, args.rows)
    return outcome


# -- report ------------------------------------------------------------------------------------


def combine(runs: list[Outcome]) -> Outcome:
    """One contender over its rounds: the median round's time (the lower middle one of an
    even count), every round's latency samples."""
    middle = sorted(runs, key=lambda o: o.seconds)[(len(runs) - 1) // 2]
    note = middle.note
    if len(runs) > 1 and middle.rows:
        note = (f"rounds: {', '.join(f'{o.extrapolated_seconds:.1f} s' for o in runs)}; "
                + note).rstrip("; ")
    return Outcome(middle.name, middle.rows, middle.seconds, middle.extrapolated_seconds,
                   wall_seconds=middle.wall_seconds, note=note,
                   reads=[r for o in runs for r in o.reads],
                   writes=[w for o in runs for w in o.writes])


def quantile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def fmt(value: float) -> str:
    return "—" if value != value else f"{value:.1f}"  # NaN: no samples


def render(combined: dict[str, Outcome], args: argparse.Namespace,
           facts: dict[str, str]) -> str:
    idle_o, single, chunked, ours = (combined[k] for k in ("idle", "single", "chunked",
                                                           "migrator"))
    outcomes = list(combined.values())
    lines = [
        BEGIN,
        "## Backfill: throughput and concurrent traffic",
        "",
        f"Table `events`: {args.rows:,} rows (`id bigint` primary key, `payload jsonb` of about "
        "150 bytes); each contender fills `drug_name text` from `payload->'drug'->>'name'` on a "
        "freshly built table (VACUUM, CHECKPOINT before the clock). Concurrent traffic: "
        f"{args.rate} statements/s (half point SELECTs, half point UPDATEs of another column, "
        "each autocommit) on random ids, from a second process on two connections; latency "
        f"per statement. {args.rounds} interleaved rounds (the row-by-row loop and the "
        "variant run once): times are whole processes (start-up included; the row-by-row loop "
        "excepted), the median round's (every round's in the notes); latencies pool every "
        "round's samples.",
        f"Measured {facts['date']} at commit {facts['commit']} with "
        f"`{benchlib.redact(facts['command'])}`.",
        "",
        "| machine | |",
        "|---|---|",
        f"| CPU | {facts['cpu']} ({facts['cores']} logical cores) |",
        f"| PostgreSQL | {facts['postgres']} |",
        f"| load average before / after | {facts['load_before']} / {facts['load_after']} |",
        "",
        f"| contender | rows/s | time for all rows | {X} single UPDATE | {X} chunked loop "
        "| reads p50 / p99 / max ms | writes p50 / p99 / max ms | writes | notes |",
        "|---|---:|---:|---:|---:|---|---|---:|---|",
    ]
    floor, loop = single.rows_per_s, chunked.rows_per_s
    for o in outcomes:
        ratio = f"{o.rows_per_s / floor:.2f}{X}" if o.rows and floor else "—"
        versus_loop = f"{o.rows_per_s / loop:.2f}{X}" if o.rows and loop else "—"
        rate = f"{o.rows_per_s:,.0f}" if o.rows else "—"
        total = f"{o.extrapolated_seconds:.1f} s" if o.rows else f"({o.seconds:.0f} s)"
        lines.append(
            f"| {o.name} | {rate} | {total} | {ratio} | {versus_loop} | "
            f"{fmt(quantile(o.reads, .5))} / {fmt(quantile(o.reads, .99))} / "
            f"{fmt(max(o.reads, default=float('nan')))} | "
            f"{fmt(quantile(o.writes, .5))} / {fmt(quantile(o.writes, .99))} / "
            f"{fmt(max(o.writes, default=float('nan')))} | {len(o.writes)} | {o.note} |")
    throughput = ours.rows_per_s / floor
    versus_chunked = ours.rows_per_s / loop
    p99_idle = quantile(idle_o.writes, .99)
    p99_ours = quantile(ours.writes, .99)
    worst = max(ours.writes, default=float("nan"))
    checks = [
        (f"throughput ≥ {THROUGHPUT_TARGET}{X} the single UPDATE",
         throughput >= THROUGHPUT_TARGET,
         f"{throughput:.2f}{X}"),
        (f"throughput ≥ {CHUNKED_TARGET}{X} the chunked keyset loop",
         versus_chunked >= CHUNKED_TARGET, f"{versus_chunked:.2f}{X}"),
        (f"concurrent write p99 ≤ {WRITE_P99_TARGET:g}{X} its no-backfill p99 "
         f"({p99_idle:.1f} ms)", p99_ours <= WRITE_P99_TARGET * p99_idle,
         f"{p99_ours:.1f} ms = {p99_ours / p99_idle:.2f}{X}"),
        (f"no concurrent write slower than {WRITE_MAX_MS:g} ms", worst <= WRITE_MAX_MS,
         f"slowest {worst:.1f} ms"),
    ]
    lines += ["", "Targets, `migrator.backfill` with default settings, whole processes:", ""]
    lines += [f"- {what}: {got} — {'met' if ok else '**not met**'}" for what, ok, got in checks]
    lines += [
        "",
        "The single UPDATE is the throughput floor but holds every row it has updated until it "
        "commits: concurrent writes to those rows wait for the whole statement. The chunked "
        "loop is what a careful engineer writes by hand (10,000-row batches, a key range per "
        "UPDATE, nothing else: no checkpoint, retries, throttle or progress). The row-by-row "
        "loop is gentle and slow (one commit per row). migrator's batches (defaults: the size "
        "adapts toward 50 ms a batch, starting at 1,000 rows; key ranges on a dense integer "
        "key) lock about ten thousand rows for tens of milliseconds at a time; its time "
        "includes the process's start-up (imports, discovery, connection, lock) and the "
        "count of rows to update at the start (the true total for progress). The last row, "
        "if present, is one non-default setting "
        "for comparison (`--variant`), outside the targets. On a shared 2-core machine the "
        "rounds of one contender differ by up to a third (notes): compare the two throughputs "
        "with that in mind. What slows concurrent writes during any fast contender is WAL and "
        "I/O contention (each commit flushes the WAL the bulk update wrote before it), not row "
        "locks: a batch locks its rows for tens of milliseconds; `pause` trades throughput for "
        "it. Raw samples: `bench/work/logs/backfill-traffic-*.jsonl`.",
        END,
    ]
    return "\n".join(lines)


def git_revision() -> str:
    try:
        rev = subprocess.run(["git", "-C", str(REPO_DIR), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO_DIR), "status", "--porcelain", "--",
                                "migrator"], capture_output=True, text=True,
                               check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return rev + (" + uncommitted changes in migrator/" if dirty else "")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL",
                                                                 DEFAULT_URL))
    parser.add_argument("--private-server", type=int, metavar="PORT", default=None,
                        help="run on a throwaway cluster of the installed PostgreSQL on "
                        "127.0.0.1:PORT instead of --database-url (a shared server's other "
                        "databases force checkpoints mid-measurement)")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds of the traffic alone, single UPDATE and migrator rows")
    parser.add_argument("--naive-rows", type=int, default=50_000)
    parser.add_argument("--naive-max-seconds", type=float, default=90.0)
    parser.add_argument("--rate", type=int, default=200, help="traffic statements per second")
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    parser.add_argument("--traffic-max-seconds", type=float, default=240.0)
    parser.add_argument("--traffic-max-ops", type=int, default=100_000)
    parser.add_argument("--results", type=Path, default=BENCH_DIR / "RESULTS.md")
    parser.add_argument("--variant", default='{"pause": "50ms"}',
                        help="JSON keyword arguments for one more migrator row ('' for none)")
    parser.add_argument("--traffic", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--stop-file", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.traffic:
        return traffic_main(args)
    if args.private_server is not None:
        with private_server(args.private_server) as url:
            args.database_url = url
            return run_benchmark(args, argv)
    return run_benchmark(args, argv)


def run_benchmark(args: argparse.Namespace, argv: list[str] | None) -> int:
    if urlsplit(args.database_url).hostname != "127.0.0.1":
        raise SystemExit("the benchmark's traffic targets only 127.0.0.1: give a URL on it")
    started = time.monotonic()
    facts = {**benchlib.machine_facts(), "load_before": f"{os.getloadavg()[0]:.2f}",
             "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
             "commit": git_revision(),
             "command": "python bench/backfill_bench.py " + shlex.join(sys.argv[1:] if argv
                                                                       is None else argv),
             "postgres": benchlib.server_version(args.database_url).split(" on ")[0]
             + (f", a private cluster (stock settings) on 127.0.0.1:{args.private_server}"
                if args.private_server is not None else f" at {args.database_url}")}
    tree = WORK_DIR / "backfill-tree"
    versions = tree / "bench" / "versions"
    versions.mkdir(parents=True, exist_ok=True)
    (versions / "0001_create_events.py").write_text(REVISION_0001)
    (versions / "0002_backfill_drug_name.py").write_text(REVISION_0002)
    with benchlib.Admin(args.database_url) as admin, admin.fresh_database("backfill") as url:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MIGRATOR_")}
        env["PYTHONPATH"] = str(REPO_DIR)
        subprocess.run([sys.executable, "-m", "migrator", "--database-url", url,
                        "--migrations-dir", str(tree), "upgrade", "--plugin", "bench",
                        "--to", "bench_0001"], env=env, check=True, capture_output=True)
        # Rounds interleave the contenders (the naive loop and the variant run once: one is
        # slow and only extrapolated, the other outside the targets); per contender, the
        # median round's throughput and every round's latency samples pooled.
        rounds: dict[str, list[Outcome]] = {}
        for number in range(1, args.rounds + 1):
            log(f"round {number}: building {args.rows:,} rows")
            reset_table(url, args.rows)
            log("traffic alone")
            rounds.setdefault("idle", []).append(idle(url, args))
            log("single UPDATE")
            rounds.setdefault("single", []).append(single_update(url, args))
            log(f"chunked keyset loop ({CHUNK:,} rows)")
            reset_table(url, args.rows)
            rounds.setdefault("chunked", []).append(chunked_loop(url, args))
            if number == 1:
                log("row-by-row loop")
                reset_table(url, args.rows)
                rounds["naive"] = [naive_loop(url, args)]
            log("migrator.backfill")
            reset_table(url, args.rows)
            rounds.setdefault("migrator", []).append(migrator_backfill(url, tree, args))
            if args.variant and number == 1:
                log(f"migrator.backfill {args.variant}")
                reset_table(url, args.rows)
                rounds.setdefault("variant", []).append(
                    migrator_backfill(url, tree, args, json.loads(args.variant)))
        combined = {label: combine(runs) for label, runs in rounds.items()}
    facts["load_after"] = f"{os.getloadavg()[0]:.2f}"
    section = render(combined, args, facts)
    print(section)
    benchlib.write_section(args.results, section, BEGIN, END)
    log(f"wrote {args.results} in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
