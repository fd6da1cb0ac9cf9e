"""No-op `migrator upgrade` as the fleet grows, with and without the revision index.

    .venv/bin/python bench/noop_scale.py                    # 100 and 1,000 plugins x 10, 7 rounds
    .venv/bin/python bench/noop_scale.py --repeat 3 --results bench/work/RESULTS.scale.md

For each fleet size (`--plugins 100 1000`, `--revisions 10`), one database is brought to head
(`psql -f fleet.sql`: the fleet's DDL and version stamps; `--prepare migrator` uses
`migrator upgrade`, minutes at 1,000 plugins), then, interleaved after one untimed warm-up round,
each contender a whole process configured as in a pod (MIGRATOR_* variables, a bare `upgrade`:
the lean no-op path):

  floor        python -c "import psycopg; connect; select 1"
  index        the revision index fresh (`migrator index` first, until no entry is racy)
  moved index  a copy of the fleet with the original's index: every file's identity differs and
               its sha256 matches, as on a node that pulled an image built with `migrator
               index` (each revision file read, none parsed, nothing written)
  no index     the index deleted before each run (untimed): every file read and parsed, and the
               index written at the end, as a first run on a laptop

Marginal cost per plugin of each migrator contender, from the medians of the smallest and
largest fleet: ((m_L - floor_L) - (m_S - floor_S)) / (L - S). The issue's target: <= 1 ms per
plugin (the index fresh). Results: printed, and written between the noop-scale markers of
`--results` (default bench/RESULTS.md; other sections are kept).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import benchlib
import fleet

BENCH_DIR = Path(__file__).resolve().parent
INDEX = ".migrator-index.json"
BEGIN = "<!-- noop-scale:begin -->"
END = "<!-- noop-scale:end -->"
FLOOR_CODE = "import sys, psycopg; psycopg.connect(sys.argv[1]).execute('select 1')"
TARGET_MS_PER_PLUGIN = 1.0
X = "\u00d7"
DASH = "\u2013"


@dataclass(slots=True)
class Contender:
    key: str
    label: str
    fleet_dir: Path | None  # None: the floor
    before: Callable[[], None] | None = None  # untimed, before each run
    samples: list[float] = field(default_factory=list)  # seconds

    @property
    def median_ms(self) -> float:
        return statistics.median(self.samples) * 1000


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def migrator_command(spec: str | None) -> list[str]:
    if spec is None:
        script = Path(sys.prefix) / "bin" / "migrator"
        if not script.exists():
            raise SystemExit(f"{script} does not exist: pip install -e . (or --migrator-cmd)")
        return [str(script)]
    argv = spec.split()
    return [sys.executable, *argv[1:]] if argv[0] in ("python", "python3") else argv


def run_once(contender: Contender, url: str, migrator: list[str], log_path: Path) -> float:
    """One whole process, timed; configured through the environment, as in a pod."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("MIGRATOR_") and k != "PYTHONDONTWRITEBYTECODE"}
    if contender.fleet_dir is None:
        argv = [sys.executable, "-c", FLOOR_CODE, url]
    else:
        argv = [*migrator, "upgrade"]
        env.update(MIGRATOR_DATABASE_URL=url, MIGRATOR_MIGRATIONS_DIR=str(contender.fleet_dir),
                   MIGRATOR_LOG_FORMAT="json")
    if contender.before is not None:
        contender.before()
    with log_path.open("wb") as out:
        returncode, elapsed = benchlib.timed_process(argv, stdout=out, stderr=out, env=env,
                                                     timeout=900)
    if returncode != 0:
        raise SystemExit(f"{contender.key} exited with {returncode}; see {log_path}")
    return elapsed


def prepare_fleets(work: Path, plugins: int, revisions: int, migrator: list[str]
                   ) -> tuple[list[fleet.PluginSpec], dict[str, Path]]:
    """The fleet three times: indexed, a moved copy keeping the original's index, unindexed."""
    base = work / f"scale-{plugins}x{revisions}"
    specs = fleet.write_fleet(base, plugins, revisions)
    benchlib.index_until_settled(migrator, base)
    dirs = {"index": base, "moved": base.with_name(base.name + "-moved"),
            "noindex": base.with_name(base.name + "-noindex")}
    for key in ("moved", "noindex"):
        shutil.rmtree(dirs[key], ignore_errors=True)
        shutil.copytree(base, dirs[key])  # new inodes and ctimes; the index comes along
    return specs, dirs


def measure(args: argparse.Namespace, plugins: int, migrator: list[str], admin: benchlib.Admin,
            log_dir: Path) -> list[Contender]:
    log(f"{plugins} plugins x {args.revisions} revisions: generating and indexing")
    specs, dirs = prepare_fleets(args.work_dir, plugins, args.revisions, migrator)
    noindex = dirs["noindex"] / INDEX
    contenders = [
        Contender("floor", 'floor: `python -c "import psycopg; connect; select 1"`', None),
        Contender("index", "`migrator upgrade`, index fresh", dirs["index"]),
        Contender("moved", "`migrator upgrade`, index moved (files re-read)", dirs["moved"]),
        Contender("noindex", "`migrator upgrade`, no index (parsed, index written)",
                  dirs["noindex"], before=lambda: noindex.unlink(missing_ok=True)),
    ]
    with admin.fresh_database(f"scale{plugins}") as url:
        log(f"{plugins}: bringing the database to head with {args.prepare}")
        if args.prepare == "psql":
            # Not psql -1: 1,000 plugins' DDL in one transaction passes
            # max_locks_per_transaction.
            subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f",
                            str(dirs["index"] / "fleet.sql"), url], check=True,
                           capture_output=True, timeout=1800)
        else:
            run_once(contenders[1], url, migrator, log_dir / f"scale{plugins}-prepare.log")
        problems = benchlib.check_heads(benchlib.read_versions(url, [s.name for s in specs]),
                                        {s.name: s.head for s in specs})
        if problems:
            raise SystemExit("the database is not at head:\n  " + "\n  ".join(problems))
        for c in contenders:  # warm-up: bytecode caches, the server's catalog caches
            run_once(c, url, migrator, log_dir / f"scale{plugins}-{c.key}.log")
        for i in range(args.repeat):
            for c in contenders:
                c.samples.append(run_once(c, url, migrator,
                                          log_dir / f"scale{plugins}-{c.key}.log"))
            log(f"{plugins} round {i + 1}/{args.repeat}: " + ", ".join(
                f"{c.key} {c.samples[-1] * 1000:.0f} ms" for c in contenders))
    return contenders


def size_table(contenders: list[Contender]) -> list[str]:
    floor = contenders[0].median_ms
    lines = [f"| contender | median ms | min{DASH}max ms | {X} floor | over floor ms |",
             "|---|---:|---:|---:|---:|"]
    for c in contenders:
        ms = [s * 1000 for s in c.samples]
        lines.append(f"| {c.label} | {c.median_ms:.1f} | {min(ms):.1f}{DASH}{max(ms):.1f} | "
                     f"{c.median_ms / floor:.2f}{X} | {c.median_ms - floor:.1f} |")
    return lines


def marginal_table(sizes: dict[int, list[Contender]]) -> list[str]:
    small, large = min(sizes), max(sizes)
    lines = [f"| contender | over floor at {small} ms | over floor at {large} ms | "
             "per plugin ms |", "|---|---:|---:|---:|"]
    for i, c in enumerate(sizes[small]):
        if c.fleet_dir is None:
            continue
        over_small = c.median_ms - sizes[small][0].median_ms
        over_large = sizes[large][i].median_ms - sizes[large][0].median_ms
        per_plugin = (over_large - over_small) / (large - small)
        lines.append(f"| {c.label} | {over_small:.1f} | {over_large:.1f} | {per_plugin:.3f} |")
    return lines


def render(args: argparse.Namespace, facts: dict[str, str],
           sizes: dict[int, list[Contender]]) -> str:
    command = "python bench/noop_scale.py " + " ".join(sys.argv[1:])
    lines = [BEGIN, "## No-op at scale: the revision index", "",
             f"Measured {facts['date']} with `{benchlib.redact(command).strip()}`; "
             f"{args.repeat} interleaved rounds after one warm-up; the database brought to head "
             f"by {args.prepare}. Machine: {facts['cpu']} ({facts['cores']} logical cores), "
             f"Python {facts['python']}, {facts['postgres']}; load average "
             f"{facts['load_before']} before, {facts['load_after']} after.", ""]
    for plugins, contenders in sorted(sizes.items()):
        lines += [f"### {plugins} plugins {X} {args.revisions} revisions", "",
                  *size_table(contenders), ""]
    if len(sizes) > 1:
        index = marginal_table(sizes)
        lines += ["### Marginal cost per plugin", "", *index, "",
                  f"Target (issue): {TARGET_MS_PER_PLUGIN:g} ms per plugin or less with the "
                  "index fresh.", ""]
    lines.append(END)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--plugins", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--revisions", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--prepare", choices=["psql", "migrator"], default="psql")
    parser.add_argument("--migrator-cmd", help="default: <venv>/bin/migrator")
    parser.add_argument("--results", type=Path, default=BENCH_DIR / "RESULTS.md")
    parser.add_argument("--work-dir", type=Path, default=BENCH_DIR / "work")
    args = parser.parse_args(argv)
    migrator = migrator_command(args.migrator_cmd)
    url = benchlib.libpq_url(args.database_url)
    log_dir = args.work_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    facts = {**benchlib.machine_facts(), "postgres": benchlib.server_version(url),
             "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
             "load_before": f"{os.getloadavg()[0]:.2f}"}
    with benchlib.Admin(url) as admin:
        sizes = {n: measure(args, n, migrator, admin, log_dir) for n in args.plugins}
    facts["load_after"] = f"{os.getloadavg()[0]:.2f}"
    section = render(args, facts, sizes)
    print(section)
    benchlib.write_section(args.results, section, BEGIN, END)
    log(f"wrote {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
