"""Benchmark `migrator upgrade --sql` against plain Alembic's offline mode over the same trees.

    python bench/sql_bench.py                         # 100 plugins x 10 revisions, 5 rounds
    python bench/sql_bench.py --plugins 10 --revisions 3 --repeat 2 --results /tmp/r.md

The fleet is bench/fleet.py's (generated into bench/work/fleet-NxM). Contenders, each a whole
process timed with `time.perf_counter()` around `subprocess.run`, stdout to a file, interleaved
(A B C A B C ...) after one untimed warm-up round:

- floor: `python -c "import alembic.command, sqlalchemy"`: start Python and import what both
  contenders need, nothing rendered.
- `migrator --migrations-dir FLEET upgrade --sql`: every plugin in dependency order, with
  migrator's preamble, version tables, stamps and history rows.
- plain Alembic offline, one process: per plugin in dependency order, `CREATE SCHEMA IF NOT
  EXISTS` and `SET search_path` written by hand, then `alembic.command.upgrade(cfg, "head",
  sql=True)` with a generated offline `env.py` (`version_table_schema=<schema>`,
  `transaction_per_migration=True`, `literal_binds=True`). This is this file run with
  `--plain-alembic FLEET`.

Checks: migrator's output is byte-identical in every round, and both contenders render every
revision of every plugin (one version stamp per revision). Writes the `sql-output` section of
bench/RESULTS.md (other sections are kept).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
BEGIN, END = "<!-- sql-output:begin -->", "<!-- sql-output:end -->"
DASH, X = "\u2013", "\u00d7"  # en dash, multiplication sign (as bench/run.py writes them)

OFFLINE_ENV_PY = '''\
"""Alembic offline env for bench/sql_bench.py: render to the buffer handed in."""
from alembic import context

config = context.config
context.configure(
    dialect_name="postgresql",
    version_table_schema=config.attributes["schema"],
    transaction_per_migration=True,
    literal_binds=True,
    output_buffer=config.attributes["output"],
)
with context.begin_transaction():
    context.run_migrations()
'''


def plain_alembic_offline(fleet: Path) -> int:
    """The plain-Alembic contender: render every plugin of `fleet` to stdout."""
    sys.path.insert(0, str(BENCH_DIR))
    from alembic import command
    from alembic.config import Config
    from plain_alembic import dependency_order, discover

    plugins = discover(fleet)
    order = dependency_order({name: p[1] for name, p in plugins.items()})
    env_dir = Path(tempfile.gettempdir()) / f"migrator-bench-alembic-offline-{os.getuid()}"
    env_dir.mkdir(parents=True, exist_ok=True)
    if not (env_dir / "env.py").is_file() or (env_dir / "env.py").read_text() != OFFLINE_ENV_PY:
        (env_dir / "env.py").write_text(OFFLINE_ENV_PY)
    out = sys.stdout
    for name in order:
        schema, _, versions = plugins[name]
        out.write(f"CREATE SCHEMA IF NOT EXISTS {schema};\n\nSET search_path TO {schema}, public;"
                  "\n\n")
        cfg = Config(output_buffer=out)
        cfg.set_main_option("script_location", str(env_dir).replace("%", "%%"))
        cfg.set_main_option("path_separator", "os")
        cfg.set_main_option("version_locations", str(versions).replace("%", "%%"))
        cfg.attributes["schema"] = schema
        cfg.attributes["output"] = out
        command.upgrade(cfg, "head", sql=True)
    return 0


def run(command: list[str], output: Path) -> tuple[float, float]:
    """Wall-clock and CPU (user + system) milliseconds of one whole process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MIGRATOR_")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["MIGRATOR_LOG_FORMAT"] = "json"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with output.open("wb") as stdout:
        started = time.perf_counter()
        result = subprocess.run(command, stdout=stdout, stderr=subprocess.PIPE, env=env,
                                check=False)
        elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} exited {result.returncode}:\n"
                         f"{result.stderr.decode()[-2000:]}")
    return elapsed * 1000, cpu * 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--plugins", type=int, default=100)
    parser.add_argument("--revisions", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--work-dir", type=Path, default=BENCH_DIR / "work")
    parser.add_argument("--results", type=Path, default=BENCH_DIR / "RESULTS.md")
    parser.add_argument("--plain-alembic", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.plain_alembic:
        return plain_alembic_offline(args.plain_alembic)

    sys.path.insert(0, str(BENCH_DIR))
    import benchlib
    import fleet

    fleet_dir = (args.work_dir / f"fleet-{args.plugins}x{args.revisions}").resolve()
    specs = fleet.write_fleet(fleet_dir, args.plugins, args.revisions)
    revisions = sum(len(s.revisions) for s in specs)
    out_dir = args.work_dir / "sql-bench"
    out_dir.mkdir(parents=True, exist_ok=True)
    python = sys.executable
    contenders = {
        "floor: `python -c \"import alembic.command, sqlalchemy\"`":
            [python, "-c", "import alembic.command, sqlalchemy"],
        "`migrator upgrade --sql`":
            [python, "-m", "migrator", "--migrations-dir", str(fleet_dir), "upgrade", "--sql"],
        "plain Alembic offline (`upgrade --sql`), one process":
            [python, str(Path(__file__).resolve()), "--plain-alembic", str(fleet_dir)],
    }
    load_before = os.getloadavg()[0]
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    cpu: dict[str, list[float]] = {name: [] for name in contenders}
    digests: set[str] = set()
    for round_number in range(args.repeat + 1):  # round 0 warms up, untimed
        for index, (name, command) in enumerate(contenders.items()):
            output = out_dir / f"contender{index}.sql"
            elapsed, cpu_ms = run(command, output)
            if round_number:
                samples[name].append(elapsed)
                cpu[name].append(cpu_ms)
            text = output.read_text()
            if index == 1:
                digests.add(hashlib.sha256(text.encode()).hexdigest())
                stamps = text.count(".alembic_version SET version_num=") + text.count(
                    ".alembic_version (version_num) VALUES")
                assert stamps == revisions, f"migrator rendered {stamps} stamps of {revisions}"
            elif index == 2:
                stamps = text.count(".alembic_version SET version_num=") + text.count(
                    ".alembic_version (version_num) VALUES")
                assert stamps == revisions, f"Alembic rendered {stamps} stamps of {revisions}"
        print(f"round {round_number}: " + ", ".join(
            f"{v[-1]:.0f} ms" for v in samples.values() if v) if round_number else "warm-up")
    assert len(digests) == 1, "migrator's --sql output differed between rounds"
    sizes = {name: (out_dir / f"contender{i}.sql").stat().st_size
             for i, name in enumerate(contenders)}
    floor = statistics.median(samples[next(iter(contenders))])
    floor_cpu = statistics.median(cpu[next(iter(contenders))])
    rows = []
    for name, values in samples.items():
        median = statistics.median(values)
        cpu_median = statistics.median(cpu[name])
        rows.append(f"| {name} | {median:.1f} | {min(values):.1f}{DASH}{max(values):.1f} | "
                    f"{median / floor:.2f}{X} | {cpu_median:.0f} | "
                    f"{cpu_median / floor_cpu:.2f}{X} | {sizes[name]:,} | "
                    f"{', '.join(f'{v:.0f}' for v in values)} |")
    facts = benchlib.machine_facts()
    versions = benchlib.package_versions(["alembic", "SQLAlchemy", "migrator"])
    migrator_ms = statistics.median(samples["`migrator upgrade --sql`"])
    alembic_ms = statistics.median(
        samples["plain Alembic offline (`upgrade --sql`), one process"])
    migrator_cpu = statistics.median(cpu["`migrator upgrade --sql`"])
    alembic_cpu = statistics.median(cpu["plain Alembic offline (`upgrade --sql`), one process"])
    section = "\n".join([
        BEGIN,
        "## Offline SQL: `upgrade --sql`",
        "",
        f"Fleet: {args.plugins} plugins {X} {args.revisions} revisions ({revisions} revisions), "
        "generated by `bench/fleet.py`. Measured "
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC with `python bench/sql_bench.py"
        + (f" --plugins {args.plugins} --revisions {args.revisions}"
           if (args.plugins, args.revisions) != (100, 10) else "")
        + f"`, {args.repeat} rounds after a warm-up, contenders interleaved; each a whole "
        "process, stdout to a file. No database is involved.",
        "",
        f"Machine: {facts['cpu']} ({facts['cores']} logical cores), {facts['memory']}, "
        f"Python {facts['python']}; " + ", ".join(f"{k} {v}" for k, v in versions.items())
        + f"; load average before / after: {load_before:.2f} / {os.getloadavg()[0]:.2f}.",
        "",
        f"| contender | median ms | min{DASH}max ms | {X} floor | median CPU ms | CPU {X} floor "
        "| output bytes | samples ms |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
        *rows,
        "",
        f"migrator takes {migrator_ms / alembic_ms:.2f}{X} plain Alembic's wall-clock time "
        f"({migrator_ms - alembic_ms:+.0f} ms) and {migrator_cpu / alembic_cpu:.2f}{X} its CPU "
        "time (the steadier figure on a shared machine) for a script that also holds, per "
        "plugin, the advisory lock, `lock_timeout`, the version table DDL and, per revision, "
        "file and "
        "transaction headers and the `migrator.history` row; its output was byte-identical in "
        "every round. Both load every revision module (Alembic's revision map) and render "
        "through the same offline `MigrationContext`.",
        END,
    ])
    benchlib.write_section(args.results, section, BEGIN, END)
    print(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
