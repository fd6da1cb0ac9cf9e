"""Commands for plugin authors, image builds and laptops: new plugins, revisions and merges, the
revision index, and the embedded server. Registered on the app by `migrator.cli`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from migrator import commands
from migrator.cli_support import handled, settings_from, shown
from migrator.db import EMBEDDED_PGDATA_PARTS


def register(app: typer.Typer) -> None:
    """Add the authoring and embedded-server commands to `app`."""
    @app.command("new-plugin")
    @handled
    def new_plugin_command(
        ctx: typer.Context,
        name: Annotated[str, typer.Argument(help="Plugin name: ^[a-z][a-z0-9_]{0,47}$")],
        schema: Annotated[str | None, typer.Option(
            "--schema", help="Its schema [default: the plugin name]", show_default=False)] = None,
        depends_on: Annotated[list[str] | None, typer.Option(
            "--depends-on", help="A plugin migrated before it (repeatable) [default: none]",
            show_default=False)] = None,
        description: Annotated[str, typer.Option(
            "--description", help="One line [default: empty]", show_default=False)] = "",
    ) -> None:
        """Create <migrations-dir>/NAME/versions/ and a commented plugin.toml (no database).

        Example: migrator new-plugin reports --depends-on core
        """
        settings = settings_from(ctx)
        path = commands.new_plugin(settings, name, schema=schema, depends_on=depends_on or [],
                                   description=description)
        typer.echo(f"created {shown(path)}/plugin.toml and {shown(path)}/versions/; next: "
                   f"migrator revision --plugin {name} -m \"create {name} tables\"")


    @app.command("revision")
    @handled
    def revision_command(
        ctx: typer.Context,
        plugin: Annotated[str, typer.Option("--plugin", "-p", help="The plugin")],
        message: Annotated[str, typer.Option("--message", "-m", help="What the revision does")],
        autogenerate: Annotated[bool, typer.Option(
            "--autogenerate", help="Compare the plugin's models with its schema in the database "
            "(at head) and write the difference")] = False,
        rev_id: Annotated[str | None, typer.Option(
            "--rev-id", help="Use this revision id [default: a generated one]",
            show_default=False)] = None,
    ) -> None:
        """Write a new revision file in the plugin's tree (a merge revision when it has two heads).

        Example: migrator --embedded revision --plugin panels -m "add panel score" --autogenerate
        """
        settings = settings_from(ctx)
        new = commands.revision(settings, plugin, message, autogenerate=autogenerate, rev_id=rev_id)
        revises = ", ".join(new.down_revisions) or "base"
        typer.echo(f"created {shown(new.path)} (revision {new.revision}, revises {revises})")
        if autogenerate:
            for change in new.changes:
                typer.echo(f"  detected {change}")
            if not new.changes:
                typer.echo("  no changes detected: upgrade() and downgrade() are empty")

    @app.command("merge")
    @handled
    def merge_command(
        ctx: typer.Context,
        plugin: Annotated[str, typer.Option("--plugin", "-p", help="The plugin")],
        message: Annotated[str, typer.Option("--message", "-m",
                                             help="What the merge joins")] = "merge heads",
    ) -> None:
        """Write the merge revision of a tree with several heads (Alembic's merge heads).

        Example: migrator merge --plugin panels -m "merge the two index branches"
        """
        settings = settings_from(ctx)
        new = commands.merge(settings, plugin, message)
        typer.echo(f"created {shown(new.path)} (revision {new.revision}, merges "
                   f"{', '.join(new.down_revisions)})")

    @app.command("index")
    @handled
    def index_command(
        ctx: typer.Context,
        migrations_dir: Annotated[str | None, typer.Option(
            "--migrations-dir", help="The plugin trees, as the global option "
            "[env: MIGRATOR_MIGRATIONS_DIR; default ./plugin_migrations]",
            show_default=False)] = None,
    ) -> None:
        """Write the revision index of every tree (no database): read every revision file
        afresh into <migrations-dir>/.migrator-index.json, and <package>/.migrator-index.json
        for trees of installed packages. Run it where the trees will be read, e.g. in the image
        build after copying them: runs on a read-only root filesystem then parse nothing.

        Example: migrator index --migrations-dir /app/plugin_migrations
        """
        from migrator import discovery

        settings = settings_from(ctx, migrations_dir=migrations_dir)
        found = discovery.discover(settings.migrations_dir, rebuild_index=True)
        written: dict[Path, list[discovery.Plugin]] = {}
        for plugin in found:
            written.setdefault(discovery.index_path(plugin, settings.migrations_dir),
                               []).append(plugin)
        for path, plugins in written.items():
            revisions = sum(len(p.revisions) for p in plugins)
            typer.echo(f"wrote {shown(path)}: {revisions} revisions of {len(plugins)} "
                       f"plugin{'s' if len(plugins) != 1 else ''}")
        if not written:
            typer.echo("no plugin trees found; no index written")

    embedded = typer.Typer(help="The embedded PostgreSQL kept in .migrator/pgdata.",
                           no_args_is_help=True)
    app.add_typer(embedded, name="embedded")

    @embedded.command("status")
    @handled
    def embedded_status_command(
        as_json: Annotated[bool, typer.Option("--json", help="One JSON document")] = False,
    ) -> None:
        """Whether the embedded server runs, its pid, port, socket and version.

        Example: migrator embedded status
        """
        from migrator import embedded as server

        status = server.server_status(Path(*EMBEDDED_PGDATA_PARTS))
        if as_json:
            typer.echo(json.dumps(status))
            return
        if not status["running"]:
            state = "stopped" if status["initialised"] else "not created yet"
            typer.echo(f"embedded PostgreSQL in {status['pgdata']}: {state}")
            return
        typer.echo(f"embedded PostgreSQL {status.get('version')} in {status['pgdata']}: running "
                   f"(pid {status['pid']}, port {status['port']}, socket "
                   f"{status['socket_dir']})")

    @embedded.command("stop")
    @handled
    def embedded_stop_command() -> None:
        """Stop the embedded server (fast shutdown); nothing to do when none runs.

        Example: migrator embedded stop
        """
        from migrator import embedded as server
        from migrator.errors import ConfigError

        pgdata = Path(*EMBEDDED_PGDATA_PARTS)
        was = server.server_status(pgdata)["running"]
        try:
            server.stop_server(pgdata)
        except RuntimeError as exc:
            raise ConfigError(str(exc)) from None
        typer.echo(f"embedded PostgreSQL in {pgdata.resolve()}: "
                   + ("stopped" if was else "was not running"))
