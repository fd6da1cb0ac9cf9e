"""New files for plugin authors: a plugin tree, revision files, and model comparison.

`new_plugin` makes `<migrations-dir>/NAME/versions/` and a commented `plugin.toml`.
`new_revision` writes a revision file the way `alembic revision` does (Alembic's
`RevisionContext` and `ScriptDirectory`, a `script.py.mako` template, Alembic's revision id
and slug rules); with `autogenerate` it compares the plugin's `models` with the plugin's own
schema, and nothing else, in the database.

Alembic and SQLAlchemy are imported inside the functions: `migrator new-plugin` needs neither.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from migrator import discovery
from migrator.config import DatabaseUrl
from migrator.discovery import NAME_PATTERN, Plugin
from migrator.errors import ConfigError, UnknownPlugin, UsageError

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection
    from sqlalchemy.schema import MetaData

# Alembic's generic script.py.mako, with the annotations the example trees use. A tree may
# bring its own `script.py.mako` beside `versions/`; it is used instead.
SCRIPT_TEMPLATE = '''"""${message}

Revision ID: ${up_revision}
Revises: ${down_revision | comma,n}
Create Date: ${create_date}

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
${imports if imports else ""}

# revision identifiers, used by Alembic.
revision: str = ${repr(up_revision)}
down_revision: str | Sequence[str] | None = ${repr(down_revision)}
branch_labels: str | Sequence[str] | None = ${repr(branch_labels)}
depends_on: str | Sequence[str] | None = ${repr(depends_on)}


def upgrade() -> None:
    ${upgrades if upgrades else "pass"}


def downgrade() -> None:
    ${downgrades if downgrades else "pass"}
'''

PLUGIN_TOML_TEMPLATE = '''\
# {name}: migrator plugin settings. Every key is optional.

# What the plugin keeps in the database (shown by `migrator plugins`).
description = "{description}"

# The PostgreSQL schema that holds the plugin's tables and its alembic_version table.
# Default: the plugin name. Lowercase letters, digits and underscores; not public,
# migrator, information_schema or pg_*; no two plugins may share a schema.
{schema_line}

# Plugins whose revisions must all be applied before this plugin's (for example the owner of
# a table this plugin's foreign keys point at). Name their tables with their schema.
{depends_line}

# The SQLAlchemy MetaData of the plugin's tables, as "package.module:attribute", for
# `migrator revision --autogenerate` and the models-match-migrations check. The working
# directory and the migrations directory are on sys.path while it is imported.
# models = "{name}.models:metadata"
'''

_NUMBERED = re.compile(r"^(\d+)_")
_DEFAULT_FILE_TEMPLATE = "%(rev)s_%(slug)s"  # Alembic's


# -- new plugin -----------------------------------------------------------------------------


def new_plugin(migrations_dir: Path, name: str, *, schema: str | None = None,
               depends_on: Sequence[str] = (), description: str = "") -> Path:
    """Create `<migrations_dir>/<name>/versions/` and a commented `plugin.toml`."""
    if not NAME_PATTERN.match(name):
        raise UsageError(f"plugin name {name!r} must match ^[a-z][a-z0-9_]{{0,47}}$ "
                         "(lowercase letters, digits, underscores)")
    if schema is not None:
        discovery.validate_schema_name(schema, where="--schema", plugin=name)
    for dependency in depends_on:
        if not NAME_PATTERN.match(dependency):
            raise UsageError(f"--depends-on {dependency!r} is not a valid plugin name")
    path = migrations_dir / name
    if path.exists():
        raise UsageError(f"{path} already exists; choose another name or remove it")
    (path / "versions").mkdir(parents=True)
    toml = PLUGIN_TOML_TEMPLATE.format(
        name=name,
        description=_toml_string(description or f"The {name} plugin's tables."),
        schema_line=(f'schema = "{schema}"' if schema else f'# schema = "{name}"'),
        depends_line=("depends_on = [" + ", ".join(f'"{d}"' for d in depends_on) + "]"
                      if depends_on else '# depends_on = ["core"]'),
    )
    (path / "plugin.toml").write_text(toml, encoding="utf-8")
    return path


def _toml_string(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")


# -- new revision ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NewRevision:
    """A revision file just written, and what autogenerate found (empty without it)."""

    plugin: str
    revision: str
    down_revisions: tuple[str, ...]
    path: Path
    changes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class _Tree:
    """What writing a revision needs of a plugin, even one with two heads (to merge them)."""

    name: str
    path: Path
    schema: str
    models: str | None
    heads: tuple[str, ...]

    @property
    def versions_dir(self) -> Path:
        return self.path / "versions"


def _find_tree(migrations_dir: Path, name: str) -> tuple[_Tree, Plugin]:
    """The plugin's tree (discovery accepts a tree with several heads: merging them is what
    `merge` is for)."""
    found = discovery.discover(migrations_dir)
    for plugin in found:
        if plugin.name == name:
            return _Tree(plugin.name, plugin.path, plugin.schema, plugin.models,
                         plugin.heads), plugin
    raise UnknownPlugin(
        f"unknown plugin {name!r}; known: {', '.join(p.name for p in found) or 'none'} "
        f"(create it with: migrator new-plugin {name})", plugin=name)


def new_revision(migrations_dir: Path, name: str, message: str, *, rev_id: str | None = None,
                 autogenerate: bool = False, url: DatabaseUrl | None = None) -> NewRevision:
    """Write a new revision file in the plugin's `versions/`, on top of its head (or merging
    its heads). With `autogenerate`, its operations come from comparing the plugin's models
    with the plugin's schema in the database at `url`, which must be at the plugin's head."""
    if not message.strip() or "\n" in message:
        raise UsageError("-m/--message must be one non-empty line (it becomes the file name)")
    if rev_id is not None and not discovery.REVISION_ID_PATTERN.match(rev_id):
        raise UsageError(f"--rev-id {rev_id!r} must be 1-32 letters, digits, '_' or '-'")
    tree, plugin = _find_tree(migrations_dir, name)
    if autogenerate:
        plugin.require_single_head()  # autogenerate compares the models with one head
        if url is None:
            raise ConfigError("--autogenerate compares with a database; pass --database-url, "
                              "set MIGRATOR_DATABASE_URL or use --embedded")
        if not plugin.models:
            raise UsageError(
                f"plugin {name!r} names no models; add models = \"package.module:metadata\" "
                f"to {plugin.path / 'plugin.toml'}")
        from migrator.checks import load_metadata  # the loader `migrator check` uses

        metadata = load_metadata(plugin)
        return _generate(tree, message, rev_id, autogenerate=(url, plugin, metadata))
    return _generate(tree, message, rev_id, autogenerate=None)


def _generate(tree: _Tree, message: str, rev_id: str | None,
              autogenerate: tuple[DatabaseUrl, Plugin, MetaData] | None) -> NewRevision:
    from alembic.autogenerate import RevisionContext
    from alembic.config import Config
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    with _template_dir(tree) as template_dir:
        script = ScriptDirectory(template_dir, file_template=_file_template(tree),
                                 version_locations=[str(tree.versions_dir)],
                                 messaging_opts={"quiet": True})
        config = Config()
        context = RevisionContext(config, script, {
            "message": message, "autogenerate": autogenerate is not None, "sql": False,
            "head": "heads" if len(tree.heads) > 1 else "head", "splice": False,
            "branch_label": None, "version_path": None, "rev_id": rev_id,
            "depends_on": None})
        changes: tuple[str, ...] = ()
        try:
            if autogenerate is not None:
                changes = _run_autogenerate(config, script, context, *autogenerate)
            scripts = [s for s in context.generate_scripts() if s is not None]
        except CommandError as exc:
            raise UsageError(f"plugin {tree.name!r}: {exc}") from None
    new = scripts[0]
    return NewRevision(plugin=tree.name, revision=new.revision,
                       down_revisions=_as_tuple(new.down_revision), path=Path(new.path),
                       changes=changes)


@contextlib.contextmanager
def _template_dir(tree: _Tree) -> Iterator[str]:
    if (tree.path / "script.py.mako").is_file():
        yield str(tree.path)
        return
    with tempfile.TemporaryDirectory(prefix="migrator-template-") as directory:
        Path(directory, "script.py.mako").write_text(SCRIPT_TEMPLATE, encoding="utf-8")
        yield directory


def _file_template(tree: _Tree) -> str:
    """`NNNN_slug` continuing a numbered tree (and for a new one), else Alembic's
    `<rev>_<slug>`."""
    names = [entry.name for entry in os.scandir(tree.versions_dir)
             if entry.name.endswith(".py") and not entry.name.startswith("__")]
    numbers = [int(m.group(1)) for n in names if (m := _NUMBERED.match(n))]
    if names and len(numbers) < len(names):
        return _DEFAULT_FILE_TEMPLATE
    return f"{max(numbers, default=0) + 1:04d}_%(slug)s"


def _run_autogenerate(config: Any, script: Any, context: Any, url: DatabaseUrl,
                      plugin: Plugin, metadata: MetaData) -> tuple[str, ...]:
    """What `alembic revision --autogenerate` does through env.py, with migrator's
    environment: a connection on the plugin's schema and filters that keep to it."""
    from alembic.runtime.environment import EnvironmentContext

    found: list[str] = []

    def retrieve_migrations(rev: Any, migration_context: Any) -> list[Any]:
        context.run_autogenerate(rev, migration_context)
        for generated in context.generated_revisions:
            for ops in generated.upgrade_ops_list:
                found.extend(describe_diff(diff) for diff in ops.as_diffs())
        return []

    environment = EnvironmentContext(config, script, fn=retrieve_migrations, as_sql=False,
                                     template_args=context.template_args,
                                     revision_context=context)
    with _plugin_connection(url, plugin) as conn, environment:
        environment.configure(connection=conn, target_metadata=metadata,
                              version_table_schema=plugin.schema,
                              **comparison_options(plugin.schema))
        with environment.begin_transaction():
            environment.run_migrations()
    return tuple(found)


def describe_diff(diff: Any) -> str:
    """One line for an Alembic autogenerate diff, like `add_column panels.notes`."""
    if isinstance(diff, list):  # a column's modifications come as a list of tuples
        return "; ".join(describe_diff(d) for d in diff)
    kind, *rest = diff
    named = [item for item in rest
             if not isinstance(item, str) and isinstance(getattr(item, "name", None), str)]
    if named:
        item = named[-1]
        table = getattr(item, "table", None)
        if table is not None and table is not item and isinstance(getattr(table, "name", None),
                                                                   str):
            return f"{kind} {table.name}.{item.name}"
        return f"{kind} {item.name}"
    return f"{kind} " + ".".join(item for item in rest if isinstance(item, str))


# -- comparing models -----------------------------------------------------------------------


def comparison_options(schema: str) -> dict[str, Any]:
    """Alembic autogenerate options that look at `schema` and nothing else: no other plugin's
    schema, no version table, no table of the models' that lives elsewhere (a dependency's
    table declared for a foreign key)."""

    def include_name(name: str | None, type_: str, parent_names: Any) -> bool:
        if type_ == "schema":
            return name is None or name == schema
        if type_ == "table":
            return name != "alembic_version" and parent_names.get("schema_name") in (None,
                                                                                     schema)
        return True

    def include_object(obj: Any, name: str | None, type_: str, reflected: bool,
                       compare_to: Any) -> bool:
        if type_ == "table":
            return obj.schema in (None, schema) and name != "alembic_version"
        return True

    return {"include_schemas": True, "include_name": include_name,
            "include_object": include_object, "compare_type": True}


@contextlib.contextmanager
def _plugin_connection(url: DatabaseUrl, plugin: Plugin) -> Iterator[Connection]:
    """A SQLAlchemy connection whose default schema is the plugin's (created if missing, as
    `migrator upgrade` would), so unqualified model tables compare with the plugin's schema.
    The plugin must be at its head: autogenerate writes the step from head to the models."""
    import psycopg
    from psycopg import sql
    from sqlalchemy import create_engine, event
    from sqlalchemy.exc import DBAPIError
    from sqlalchemy.pool import NullPool

    from migrator import connections, db

    try:
        with connections.connect(url, timeout=10) as raw:
            raw.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(
                sql.Identifier(plugin.schema)))
            current = db.read_current_revisions(raw, [plugin]).get(plugin.schema, ())
    except psycopg.Error as exc:
        raise db.database_error(exc) from exc
    expected = (plugin.head,) if plugin.head else ()
    if tuple(current) != expected:
        raise UsageError(
            f"plugin {plugin.name!r}: the database is at {','.join(current) or 'base'}, its "
            f"head is {plugin.head or 'base'}; autogenerate compares the models with the "
            f"schema at head, so first run: migrator upgrade --plugin {plugin.name}")
    engine = create_engine(url.sqlalchemy_url(), poolclass=NullPool)

    @event.listens_for(engine, "connect", insert=True)
    def only_the_plugin_schema(dbapi_connection: Any, _record: Any) -> None:
        # The plugin's schema alone: with public on search_path, reflecting the default schema
        # would also list public's tables (SQLAlchemy lists what search_path makes visible).
        dbapi_connection.autocommit = True
        dbapi_connection.execute(sql.SQL("SET search_path TO {}").format(
            sql.Identifier(plugin.schema)))
        dbapi_connection.autocommit = False

    try:
        with engine.connect() as conn:
            if conn.dialect.default_schema_name != plugin.schema:
                raise ConfigError(
                    f"plugin {plugin.name!r}: the connection's current schema is "
                    f"{conn.dialect.default_schema_name!r}, not {plugin.schema!r}; check that "
                    "the login role has USAGE on the plugin's schema")
            yield conn
    except DBAPIError as exc:
        raise db.database_error(exc) from exc
    finally:
        engine.dispose()


def _as_tuple(down_revision: Any) -> tuple[str, ...]:
    """A revision's `down_revision` (None, an id, or a tuple of ids for a merge) as a tuple."""
    if down_revision is None:
        return ()
    if isinstance(down_revision, str):
        return (down_revision,)
    return tuple(down_revision)


def merge_heads(migrations_dir: Path, name: str, message: str) -> NewRevision:
    """The merge revision of a tree with several heads (Alembic's `merge heads`); a tree with
    one head has nothing to merge."""
    tree, _plugin = _find_tree(migrations_dir, name)
    if len(tree.heads) < 2:
        raise UsageError(f"plugin {name!r} has one head ({', '.join(tree.heads) or 'none'}); "
                         "there is nothing to merge")
    return new_revision(migrations_dir, name, message)
