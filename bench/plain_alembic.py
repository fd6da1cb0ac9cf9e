"""The "plain Alembic in one process" contender: how teams glue per-plugin Alembic trees today.

    python bench/plain_alembic.py --database-url URL --migrations-dir bench/work/fleet

For each plugin (a directory with `versions/`; optional `plugin.toml` with `schema` and
`depends_on`), in dependency order, on one connection: `CREATE SCHEMA IF NOT EXISTS`, set
`search_path` to the plugin schema (then public), and run `alembic.command.upgrade(cfg, "head")`
with a `Config` built in code: `script_location` is a small generated env dir (an `env.py` that
uses the connection and `version_table_schema=<schema>`), `version_locations` the plugin's
`versions/`. One transaction per revision by default (as migrator does); `--transaction-per-plugin`
gives Alembic's stock one-transaction-per-run behaviour instead.

Used for both scenarios: on a database at head it is a no-op run; on an empty one, a fresh apply.
Imports only what the job needs, so the timing is Alembic's, not this benchmark's.
"""

from __future__ import annotations

import argparse
import graphlib
import os
import sys
import tempfile
import tomllib
from pathlib import Path

ENV_PY = '''\
"""Alembic env for bench/plain_alembic.py: run on the connection and schema handed in."""
from alembic import context

config = context.config
context.configure(
    connection=config.attributes["connection"],
    version_table_schema=config.attributes["schema"],
    transaction_per_migration=config.attributes["transaction_per_migration"],
)
with context.begin_transaction():
    context.run_migrations()
'''


def discover(root: Path) -> dict[str, tuple[str, list[str], Path]]:
    """name -> (schema, depends_on, versions dir)."""
    plugins: dict[str, tuple[str, list[str], Path]] = {}
    for child in sorted(root.iterdir()):
        if not (child / "versions").is_dir():
            continue
        meta: dict[str, object] = {}
        toml = child / "plugin.toml"
        if toml.is_file():
            meta = tomllib.loads(toml.read_text())
        schema = str(meta.get("schema", child.name))
        deps = meta.get("depends_on", [])
        assert isinstance(deps, list)
        plugins[child.name] = (schema, [str(d) for d in deps], child / "versions")
    return plugins


def dependency_order(deps: dict[str, list[str]]) -> list[str]:
    """Topological order; among plugins that are ready together, by name."""
    sorter: graphlib.TopologicalSorter[str] = graphlib.TopologicalSorter(deps)
    sorter.prepare()
    order: list[str] = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready())
        order.extend(ready)
        sorter.done(*ready)
    return order


def env_dir() -> Path:
    """A stable generated env dir, rewritten only when its content changes (keeps its .pyc)."""
    path = Path(tempfile.gettempdir()) / f"migrator-bench-alembic-env-{os.getuid()}"
    env = path / "env.py"
    if not env.is_file() or env.read_text() != ENV_PY:
        path.mkdir(parents=True, exist_ok=True)
        tmp = path / f"env.py.{os.getpid()}"
        tmp.write_text(ENV_PY)
        tmp.replace(env)
    return path


def sqlalchemy_url(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    if scheme in ("postgres", "postgresql"):
        scheme = "postgresql+psycopg"
    return scheme + sep + rest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--migrations-dir", type=Path, required=True)
    parser.add_argument("--transaction-per-plugin", action="store_true")
    args = parser.parse_args(argv)

    import sqlalchemy as sa
    from alembic import command
    from alembic.config import Config

    plugins = discover(args.migrations_dir)
    order = dependency_order({name: p[1] for name, p in plugins.items()})
    script_location = str(env_dir()).replace("%", "%%")
    engine = sa.create_engine(sqlalchemy_url(args.database_url), poolclass=sa.NullPool)
    with engine.connect() as conn:
        quote = conn.dialect.identifier_preparer.quote_schema
        for name in order:
            schema, _, versions = plugins[name]
            conn.execute(sa.schema.CreateSchema(schema, if_not_exists=True))
            conn.exec_driver_sql(f"SET search_path TO {quote(schema)}, public")
            conn.commit()
            cfg = Config()
            cfg.set_main_option("script_location", script_location)
            cfg.set_main_option("path_separator", "os")
            cfg.set_main_option("version_locations", str(versions).replace("%", "%%"))
            cfg.attributes["connection"] = conn
            cfg.attributes["schema"] = schema
            cfg.attributes["transaction_per_migration"] = not args.transaction_per_plugin
            command.upgrade(cfg, "head")
            conn.commit()
    engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
