"""Two versions of migrator side by side: the checkout you have and an earlier commit.

    .venv/bin/python bench/compare.py --before 7aba29d            # 100 plugins x 10 revisions
    .venv/bin/python bench/compare.py --before HEAD~3 --plugins 10 --revisions 3 --rounds 2

The earlier commit is checked out into a temporary git worktree; both run with this venv's
Python and packages (`python -m migrator`, PYTHONPATH pointing at each tree). Scenarios, each
contender one whole process, contenders interleaved (before, after, before, after, ...) after
one untimed warm-up round: `noop` (a database at head) and `fresh` (an empty database created
before timing and dropped after). Prints a Markdown table of medians, min-max and the ratio
after/before; nothing is written to RESULTS.md (paste what you keep, with the machine).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import benchlib
import fleet

DASH = "\u2013"  # en dash, as in RESULTS.md

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent


def run(tree: Path, migrations: Path, url: str) -> float:
    env = {**os.environ, "PYTHONPATH": str(tree), "MIGRATOR_LOG_FORMAT": "json",
           "MIGRATOR_DATABASE_URL": url, "MIGRATOR_MIGRATIONS_DIR": str(migrations)}
    env.pop("MIGRATOR_TEST_DATABASE_URL", None)
    with tempfile.TemporaryFile("w+") as out:
        returncode, elapsed = benchlib.timed_process(
            [sys.executable, "-m", "migrator", "upgrade"], env=env, stdout=out, stderr=out,
            cwd=tempfile.gettempdir())
        out.seek(0)
        output = out.read()
    if returncode != 0:
        raise SystemExit(f"{tree}: exit {returncode}\n{output[-2000:]}")
    return elapsed * 1000


def admin(url: str, statement: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(statement)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", required=True, help="the earlier commit")
    parser.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--plugins", type=int, default=100)
    parser.add_argument("--revisions", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="migrator-compare-"))
    before = work / "before"
    subprocess.run(["git", "-C", str(REPO_DIR), "worktree", "add", "--detach", str(before),
                    args.before], check=True, capture_output=True)
    try:
        migrations = work / "fleet"
        fleet.write_fleet(migrations, args.plugins, args.revisions)
        trees = {"before": before, "after": REPO_DIR}
        samples: dict[tuple[str, str], list[float]] = {}
        noop_db = f"bench_compare_{uuid.uuid4().hex[:8]}"
        admin(args.database_url, f'CREATE DATABASE "{noop_db}"')
        noop_url = benchlib.with_database(args.database_url, noop_db)
        run(REPO_DIR, migrations, noop_url)
        for scenario in ("noop", "fresh"):
            for round_number in range(args.rounds + 1):
                for label, tree in trees.items():
                    url = noop_url
                    if scenario == "fresh":
                        name = f"bench_compare_{uuid.uuid4().hex[:8]}"
                        admin(args.database_url, f'CREATE DATABASE "{name}"')
                        url = benchlib.with_database(args.database_url, name)
                    try:
                        elapsed = run(tree, migrations, url)
                    finally:
                        if scenario == "fresh":
                            admin(args.database_url, f'DROP DATABASE "{name}" WITH (FORCE)')
                    if round_number:  # round 0 warms up
                        samples.setdefault((scenario, label), []).append(elapsed)
        admin(args.database_url, f'DROP DATABASE "{noop_db}" WITH (FORCE)')
    finally:
        subprocess.run(["git", "-C", str(REPO_DIR), "worktree", "remove", "--force",
                        str(before)], check=False, capture_output=True)

    print(f"| scenario ({args.plugins} x {args.revisions}) | before {args.before} median ms "
          f"(min{DASH}max) | after median ms (min{DASH}max) | after / before |")
    print("|---|---:|---:|---:|")
    for scenario in ("noop", "fresh"):
        b, a = samples[(scenario, "before")], samples[(scenario, "after")]
        print(f"| {scenario} | {statistics.median(b):.0f} ({min(b):.0f}{DASH}{max(b):.0f}) | "
              f"{statistics.median(a):.0f} ({min(a):.0f}{DASH}{max(a):.0f}) | "
              f"{statistics.median(a) / statistics.median(b):.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
