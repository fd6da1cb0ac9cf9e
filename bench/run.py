"""Benchmark migrator's core runner against its floors and against plain Alembic.

    .venv/bin/python bench/run.py                          # full: 100 plugins x 10 revisions
    .venv/bin/python bench/run.py --quick --skip-migrator  # smoke: 10 x 3, 2 rounds
    .venv/bin/python bench/run.py --migrator-cmd "python -m migrator"

Scenarios (each contender is one whole process, timed with time.perf_counter around a
blocking wait, benchlib.timed_process; contenders interleaved A B C A B C ...; one untimed
warm-up round first):

  noop   a database already at head. floor = `python -c "import psycopg; connect; select 1"`,
         `migrator upgrade`, plain Alembic (bench/plain_alembic.py) in one process.
  fresh  an empty database per run (created before timing starts, dropped after).
         floor = `psql -1 -f fleet.sql` (the same DDL in one session and one transaction),
         `migrator upgrade`, plain Alembic in one process (one transaction per revision).

The warm-up round of `fresh` also checks that every contender produced exactly the schema
fleet.sql produces (columns, constraints, indexes, sequences, version stamps); every timed run
is checked to leave each plugin at its head. Any contender exiting non-zero stops the run with
its output. Results: printed, and written into RESULTS.md between the core-runner markers
(other sections of the file are kept); raw samples go to bench/work/results-*.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import benchlib
import fleet

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
BEGIN = "<!-- core-runner:begin -->"
END = "<!-- core-runner:end -->"
FLOOR_CODE = "import sys, psycopg; psycopg.connect(sys.argv[1]).execute('select 1')"
TIMEOUT_S = 900.0
NOOP_TARGET = 1.15  # the speed issue's targets
FRESH_TARGET = 1.4
SEQUENTIAL_TARGET = 1.9
ISSUE_PLAIN = {"noop": 8.8, "fresh": 2.17}
X = "\u00d7"  # multiplication sign
DASH = "\u2013"  # en dash


class ContenderFailed(RuntimeError):
    pass


@dataclass(frozen=True, slots=True)
class Contender:
    key: str  # floor | migrator | plain_alembic
    label: str  # as shown in the results table
    argv: Callable[[str], list[str]]  # database URL -> command line
    env: Callable[[str], dict[str, str]] | None = None  # database URL -> extra environment

    @property
    def is_floor(self) -> bool:
        return self.key == "floor"


@dataclass(slots=True)
class Result:
    contender: Contender
    samples: list[float] = field(default_factory=list)  # seconds
    skipped: str | None = None

    @property
    def median_ms(self) -> float:
        return statistics.median(self.samples) * 1000


@dataclass(frozen=True, slots=True)
class Settings:
    url: str
    fleet_dir: Path
    schemas: list[str]
    heads: dict[str, str]
    migrator: list[str] | None  # None: skipped
    log_dir: Path
    env: dict[str, str]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def resolve_migrator(cmd: str | None) -> list[str]:
    """The migrator command line: the venv's console script, or e.g. "python -m migrator"."""
    if cmd is None:
        script = Path(sys.prefix) / "bin" / "migrator"
        if not script.exists():
            raise SystemExit(
                f"migrator contender: {script} does not exist (is migrator installed in this "
                "venv? `pip install -e .`). Use --migrator-cmd 'python -m migrator', or "
                "--skip-migrator to measure only the other contenders."
            )
        return [str(script)]
    argv = shlex.split(cmd)
    if argv and argv[0] in ("python", "python3"):
        argv[0] = sys.executable
    return argv


def contender_env() -> dict[str, str]:
    env = dict(os.environ)
    env["MIGRATOR_LOG_FORMAT"] = "json"
    # Contenders must be able to cache bytecode, as they would in a real image.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def run_timed(contender: Contender, url: str, settings: Settings, scenario: str) -> float:
    """Run one contender as a whole process; its output goes to a log file, not the terminal."""
    argv = contender.argv(url)
    log_path = settings.log_dir / f"{scenario}-{contender.key}.log"
    with log_path.open("wb") as out:
        returncode, elapsed = benchlib.timed_process(
            argv, stdout=out, stderr=out, timeout=TIMEOUT_S,
            env={**settings.env, **(contender.env(url) if contender.env else {})})
    if returncode != 0:
        tail = log_path.read_text(errors="replace").splitlines()[-40:]
        raise ContenderFailed(
            f"{scenario}: contender {contender.key!r} exited with {returncode}\n"
            f"  command: {shlex.join(benchlib.redact(a) for a in argv)}\n"
            f"  output ({log_path}, last lines):\n    " + "\n    ".join(tail)
        )
    return elapsed


def expect_heads(url: str, settings: Settings, who: str) -> None:
    problems = benchlib.check_heads(benchlib.read_versions(url, settings.schemas), settings.heads)
    if problems:
        raise ContenderFailed(
            f"{who} did not leave every plugin at head:\n  " + "\n  ".join(problems)
        )


def contenders_for(scenario: str, settings: Settings) -> list[Contender]:
    fleet_dir = settings.fleet_dir
    if scenario == "noop":
        floor = Contender(
            "floor",
            'floor: `python -c "import psycopg; connect; select 1"`',
            lambda url: [sys.executable, "-c", FLOOR_CODE, url],
        )
    else:
        floor = Contender(
            "floor",
            "floor: `psql -1 -f fleet.sql` (one session, one transaction)",
            lambda url: benchlib.psql_command(fleet_dir / "fleet.sql", url),
        )
    migrator_cmd = settings.migrator or ["migrator"]

    def configured(url: str, **extra: str) -> dict[str, str]:
        # As a pod runs it: the bare command, configured through its variables (a bare
        # `upgrade` is what the lean no-op path answers).
        return {"MIGRATOR_DATABASE_URL": url, "MIGRATOR_MIGRATIONS_DIR": str(fleet_dir),
                **extra}

    migrator = Contender(
        "migrator",
        "`migrator upgrade` (defaults: `--jobs` min(CPUs, 2))",
        lambda url: [*migrator_cmd, "upgrade"],
        configured,
    )
    if scenario == "fresh":
        sequential = Contender(
            "migrator_jobs1",
            "`migrator upgrade` with `MIGRATOR_JOBS=1`",
            lambda url: [*migrator_cmd, "upgrade"],
            lambda url: configured(url, MIGRATOR_JOBS="1"),
        )
    plain = Contender(
        "plain_alembic",
        "plain Alembic, one process (1 transaction/revision)",
        lambda url: benchlib.plain_alembic_command(fleet_dir, url),
    )
    if scenario == "fresh":
        return [floor, migrator, plain, sequential]
    return [floor, migrator, plain]


def run_noop(settings: Settings, rounds: int) -> list[Result]:
    contenders = contenders_for("noop", settings)
    results = [Result(c) for c in contenders]
    if settings.migrator is None:
        results[1].skipped = "skipped (`--skip-migrator`)"
    active = [r for r in results if r.skipped is None]
    with benchlib.Admin(settings.url) as admin, admin.fresh_database("noop") as url:
        # Bring the database to head the way it would be in production: with migrator itself
        # when it is measured (its own records exist then), else with plain Alembic.
        prep = results[1].contender if settings.migrator is not None else results[2].contender
        log(f"noop: bringing the database to head with {prep.key}")
        run_timed(prep, url, settings, "noop-prepare")
        expect_heads(url, settings, prep.key)
        log("noop: warm-up round (untimed)")
        for r in active:
            run_timed(r.contender, url, settings, "noop")
        for i in range(rounds):
            for r in active:
                r.samples.append(run_timed(r.contender, url, settings, "noop"))
            log(f"noop round {i + 1}/{rounds}: " + _round_line(active))
        expect_heads(url, settings, "noop contenders")
    return results


def run_fresh(settings: Settings, rounds: int) -> list[Result]:
    contenders = contenders_for("fresh", settings)
    results = [Result(c) for c in contenders]
    if settings.migrator is None:
        for r in results:
            if r.contender.key.startswith("migrator"):
                r.skipped = "skipped (`--skip-migrator`)"
    active = [r for r in results if r.skipped is None]
    with benchlib.Admin(settings.url) as admin:
        log("fresh: warm-up round (untimed), comparing every contender's schema to fleet.sql's")
        reference: benchlib.Snapshot | None = None
        for r in active:
            with admin.fresh_database(f"fresh_{r.contender.key}") as url:
                run_timed(r.contender, url, settings, "fresh")
                snap = benchlib.snapshot(url, settings.schemas)
            problems = benchlib.check_heads(snap, settings.heads)
            if reference is None:
                reference = snap  # the floor (psql) runs first
            else:
                problems += benchlib.diff_snapshots(reference, snap, "psql", r.contender.key)
            if problems:
                raise ContenderFailed(
                    f"fresh: {r.contender.key} does not match fleet.sql:\n  "
                    + "\n  ".join(problems)
                )
        checkpoints = True
        for i in range(rounds):
            for r in active:
                name, url = admin.create_database(f"fresh_{r.contender.key}")
                try:
                    checkpoints = admin.checkpoint() and checkpoints
                    r.samples.append(run_timed(r.contender, url, settings, "fresh"))
                    expect_heads(url, settings, r.contender.key)
                finally:
                    admin.drop_database(name)
            log(f"fresh round {i + 1}/{rounds}: " + _round_line(active))
        if not checkpoints:
            log("fresh: note: CHECKPOINT not permitted for this role; runs were not isolated")
    return results


def _round_line(results: list[Result]) -> str:
    return ", ".join(f"{r.contender.key} {r.samples[-1] * 1000:.0f} ms" for r in results)


def render_table(results: list[Result]) -> list[str]:
    floor = next(r for r in results if r.contender.is_floor)
    lines = [
        f"| contender | median ms | min{DASH}max ms | {X} floor | samples ms |",
        "|---|---:|---:|---:|---|",
    ]
    for r in results:
        if r.skipped is not None:
            lines.append(f"| {r.contender.label} | — | — | — | {r.skipped} |")
            continue
        ms = [s * 1000 for s in r.samples]
        ratio = r.median_ms / floor.median_ms
        lines.append(
            f"| {r.contender.label} | {r.median_ms:.1f} | {min(ms):.1f}{DASH}{max(ms):.1f} | "
            f"{ratio:.2f}{X} | {', '.join(f'{v:.0f}' for v in ms)} |"
        )
    return lines


def verdict(results: list[Result], target: float, issue_plain: float) -> list[str]:
    floor, migrator, plain = results[:3]
    out = [
        f"Target: `migrator upgrade` \u2264 {target}{X} the floor (the issue measured plain "
        f"Alembic at about {issue_plain:g}{X}; here {plain.median_ms / floor.median_ms:.2f}{X})."
    ]
    if migrator.skipped is not None:
        out.append("Result: migrator not measured in this run (`--skip-migrator`).")
    else:
        ratio = migrator.median_ms / floor.median_ms
        met = "met" if ratio <= target else "**NOT met**"
        speedup = plain.median_ms / migrator.median_ms
        versus = (
            f"{speedup:.1f}{X} faster than" if speedup >= 1 else f"{1 / speedup:.1f}{X} slower than"
        )
        out.append(
            f"Result: migrator {ratio:.2f}{X} the floor \u2014 target {met}; "
            f"{versus} plain Alembic."
        )
    for extra in results[3:]:
        if extra.skipped is None and extra.contender.key == "migrator_jobs1":
            ratio = extra.median_ms / floor.median_ms
            met = "met" if ratio <= SEQUENTIAL_TARGET else "**NOT met**"
            out.append(f"Sequential (`MIGRATOR_JOBS=1`): {ratio:.2f}{X} the floor \u2014 target "
                       f"\u2264 {SEQUENTIAL_TARGET}{X} {met}.")
    return out


def git_revision() -> str:
    try:
        rev = subprocess.run(
            ["git", "-C", str(REPO_DIR), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO_DIR), "status", "--porcelain", "--", "migrator"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return rev + (" + uncommitted changes in migrator/" if dirty else "")


def render_section(
    args: argparse.Namespace,
    settings: Settings,
    facts: dict[str, str],
    outcome: dict[str, list[Result]],
    rounds: dict[str, int],
) -> str:
    depends = sum(1 for s in fleet.build_fleet(args.plugins, args.revisions) if s.depends_on)
    statements = sum(
        1
        for line in (settings.fleet_dir / "fleet.sql").read_text().splitlines()
        if line and not line.startswith("--")
    )
    command = "python bench/run.py " + shlex.join(sys.argv[1:])
    lines = [
        BEGIN,
        "## Core runner: no-op and fresh apply",
        "",
        f"Fleet: {args.plugins} plugins {X} {args.revisions} revisions "
        f"({args.plugins * args.revisions} revisions; {depends} of the plugins have `depends_on`; "
        f"{statements} SQL statements in fleet.sql), generated by `bench/fleet.py`.",
        f"Measured {facts['date']} at commit {facts['commit']} with "
        f"`{benchlib.redact(command).strip()}`.",
        "Each contender is a whole process timed with `time.perf_counter()` around "
        "a blocking `waitpid` (`benchlib.timed_process`); contenders interleaved "
        "(A B C A B C ...) after one untimed warm-up round; output to a log file "
        "(migrator with `MIGRATOR_LOG_FORMAT=json`).",
        "",
        "| machine | |",
        "|---|---|",
        f"| CPU | {facts['cpu']} ({facts['cores']} logical cores) |",
        f"| memory | {facts['memory']} |",
        f"| OS | {facts['os']} |",
        f"| Python | {facts['python']} |",
        f"| PostgreSQL | {facts['postgres']} at {facts['server']} |",
        f"| load average before / after | {facts['load_before']} / {facts['load_after']} |",
        f"| packages | {facts['packages']} |",
        "",
    ]
    if "noop" in outcome:
        lines += [
            f"### (a) No-op `upgrade`, database at head ({rounds['noop']} rounds)",
            "",
            *render_table(outcome["noop"]),
            "",
            *verdict(outcome["noop"], NOOP_TARGET, ISSUE_PLAIN["noop"]),
            "",
        ]
    if "fresh" in outcome:
        lines += [
            f"### (b) Fresh apply to an empty database ({rounds['fresh']} rounds)",
            "",
            *render_table(outcome["fresh"]),
            "",
            *verdict(outcome["fresh"], FRESH_TARGET, ISSUE_PLAIN["fresh"]),
            "Every contender's schema was checked equal to fleet.sql's (columns, constraints, "
            "indexes, sequences, version stamps). The floor runs the whole fleet in one "
            "transaction; migrator and plain Alembic commit once per revision.",
            "",
        ]
    lines.append(END)
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--database-url",
        default=DEFAULT_URL,
        help="server to create scratch databases on (default: %(default)s)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 10 plugins x 3 revisions, 2 rounds, results in bench/work",
    )
    parser.add_argument("--plugins", type=int, help="default 100 (quick: 10)")
    parser.add_argument("--revisions", type=int, help="default 10 (quick: 3)")
    parser.add_argument(
        "--repeat", type=int, help="timed rounds per scenario (default: noop 15, fresh 5; quick 2)"
    )
    parser.add_argument("--scenario", choices=["noop", "fresh", "all"], default="all")
    parser.add_argument(
        "--skip-migrator", action="store_true", help="measure only the floors and plain Alembic"
    )
    parser.add_argument(
        "--migrator-cmd",
        help="command for migrator (default: <venv>/bin/migrator; "
        "'python -m migrator' uses this interpreter)",
    )
    parser.add_argument(
        "--results",
        type=Path,
        help="markdown file to update (default: bench/RESULTS.md; "
        "quick: bench/work/RESULTS.quick.md)",
    )
    parser.add_argument("--work-dir", type=Path, default=BENCH_DIR / "work")
    args = parser.parse_args(argv)
    args.plugins = args.plugins or (10 if args.quick else 100)
    args.revisions = args.revisions or (3 if args.quick else 10)
    if args.results is None:
        args.results = (
            args.work_dir / "RESULTS.quick.md" if args.quick else BENCH_DIR / "RESULTS.md"
        )
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("psql") is None:
        raise SystemExit("psql is not on PATH; it is the fresh-apply floor")
    migrator = None
    if args.skip_migrator:
        log("migrator contender SKIPPED (--skip-migrator): measuring floors and plain Alembic only")
    else:
        migrator = resolve_migrator(args.migrator_cmd)
    url = benchlib.libpq_url(args.database_url)

    fleet_dir = args.work_dir / f"fleet-{args.plugins}x{args.revisions}"
    log(f"generating {args.plugins} plugins x {args.revisions} revisions into {fleet_dir}")
    specs = fleet.write_fleet(fleet_dir, args.plugins, args.revisions)
    if migrator is not None:
        # As the image does (Dockerfile): the revision index beside the trees, built once
        # they are old enough to be trusted on their identity (as in an image).
        benchlib.index_until_settled(migrator, fleet_dir, env=contender_env())
    log_dir = args.work_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    settings = Settings(
        url=url,
        fleet_dir=fleet_dir.resolve(),
        schemas=[s.name for s in specs],
        heads={s.name: s.head for s in specs},
        migrator=migrator,
        log_dir=log_dir,
        env=contender_env(),
    )
    default_rounds = {"noop": 2, "fresh": 2} if args.quick else {"noop": 15, "fresh": 5}
    rounds = {k: args.repeat or v for k, v in default_rounds.items()}
    scenarios = ["noop", "fresh"] if args.scenario == "all" else [args.scenario]

    versions = benchlib.package_versions(["alembic", "SQLAlchemy", "psycopg", "migrator"])
    parts = urlsplit_host(url)
    facts = {
        **benchlib.machine_facts(),
        "postgres": benchlib.server_version(url),
        "server": parts,
        "packages": ", ".join(f"{k} {v}" for k, v in versions.items()),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": git_revision(),
        "load_before": load_average(),
    }
    outcome: dict[str, list[Result]] = {}
    try:
        for scenario in scenarios:
            runner = run_noop if scenario == "noop" else run_fresh
            outcome[scenario] = runner(settings, rounds[scenario])
    except ContenderFailed as exc:
        log(f"\nBENCHMARK FAILED: {exc}")
        return 1

    facts["load_after"] = load_average()
    section = render_section(args, settings, facts, outcome, rounds)
    print(section)
    benchlib.write_section(args.results, section, BEGIN, END)
    raw = {
        "facts": facts,
        "args": {k: str(v) for k, v in vars(args).items()},
        "samples_s": {sc: {r.contender.key: r.samples for r in res} for sc, res in outcome.items()},
    }
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    raw_path = args.work_dir / f"results-{stamp}.json"
    raw_path.write_text(json.dumps(raw, indent=2) + "\n")
    log(f"wrote {args.results} and {raw_path}")
    return 0


def load_average() -> str:
    """1-minute load: a busy machine (another benchmark, a test run) makes numbers noisy."""
    try:
        return f"{os.getloadavg()[0]:.2f}"
    except OSError:
        return "unknown"


def urlsplit_host(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname or 'local socket'}:{parts.port or 5432}"


if __name__ == "__main__":
    sys.exit(main())
