"""The command line: flags → `Settings`, call a verb in `commands` or `runs`, render.

typer is imported only here and in `cli_support` (shared options, rendering, and the one place
where errors become exit codes). Results go to stdout, logs to stderr.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from migrator import cli_tools, commands, logs, previews
from migrator.cli_support import (
    DryRun,
    Format,
    FromRevision,
    IsolateRoles,
    Jobs,
    LockTimeout,
    LockWait,
    OutputDir,
    OutputFormat,
    PlanFormatOption,
    Plugins,
    Retries,
    Sql,
    emit_json,
    emit_lint,
    emit_review,
    emit_sql,
    handled,
    review_flags,
    run_options,
    settings_from,
    table,
)

app = typer.Typer(
    name="migrator",
    help="Apply each plugin's Alembic revisions to its own PostgreSQL schema, lock-safely.\n\n"
         "Example: migrator --database-url postgresql://app@db/platform upgrade",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals would include the database URL
    # Plain help, as click renders it: no boxes, and "[env: ...]" is text, not Rich markup.
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

@app.callback()
def main(
    ctx: typer.Context,
    database_url: Annotated[str | None, typer.Option(
        "--database-url", help="PostgreSQL URL [env: MIGRATOR_DATABASE_URL, then "
        "MIGRATOR_DATABASE_URL_FILE; required unless --embedded]", show_default=False)] = None,
    migrations_dir: Annotated[str | None, typer.Option(
        "--migrations-dir", help="Plugin trees [env: MIGRATOR_MIGRATIONS_DIR; default "
        "./plugin_migrations]", show_default=False)] = None,
    embedded: Annotated[bool | None, typer.Option(
        "--embedded", help="Use a local embedded PostgreSQL kept in .migrator/pgdata "
        "[env: MIGRATOR_EMBEDDED=1]", show_default=False)] = None,
    connect_timeout: Annotated[str | None, typer.Option(
        "--connect-timeout", help="Keep retrying the first connection this long "
        "[env: MIGRATOR_CONNECT_TIMEOUT; default 60s]", show_default=False)] = None,
    log_format: Annotated[str | None, typer.Option(
        "--log-format", help="auto (console on a terminal, JSON lines otherwise) | json | "
        "console [env: MIGRATOR_LOG_FORMAT; default auto]", show_default=False)] = None,
    log_level: Annotated[str | None, typer.Option(
        "--log-level", help="debug | info | warning | error [env: MIGRATOR_LOG_LEVEL; "
        "default info]", show_default=False)] = None,
    verbose: Annotated[bool | None, typer.Option(
        "--verbose", "-v", help="Console output: also a line for each plugin already at head "
        "[env: MIGRATOR_VERBOSE=1]", show_default=False)] = None,
) -> None:
    """Apply each plugin's Alembic revisions to its own PostgreSQL schema, lock-safely.

    Example: migrator --database-url postgresql://app@db/platform upgrade
    """
    ctx.obj = {"database_url": database_url, "migrations_dir": migrations_dir,
               "embedded": embedded or None, "connect_timeout": connect_timeout,
               "log_format": log_format, "log_level": log_level, "verbose": verbose or None}
    # Until the settings are read (they may be invalid), errors still go to stderr.
    logs.configure(log_format=log_format if log_format in ("json", "console") else "auto")


@app.command("plugins")
@handled
def plugins_command(ctx: typer.Context, output: OutputFormat = Format.table) -> None:
    """List discovered plugins: name, schema, source, dependencies and head revision.

    Example: migrator plugins --format json
    """
    settings = settings_from(ctx)
    found = commands.plugins(settings)
    document = {"plugins": [{"name": p.name, "schema": p.schema, "source": p.source,
                             "depends_on": list(p.depends_on), "head": p.head,
                             "heads": list(p.heads), "extensions": list(p.extensions),
                             "version_table": p.version_table} for p in found]}
    if output is Format.json:
        emit_json(document)
    else:
        table(["plugin", "schema", "depends on", "head", "source"],
               [[p.name, p.schema, ", ".join(p.depends_on), ", ".join(p.heads) or None,
                 p.source] for p in found])


@app.command("status")
@handled
def status_command(ctx: typer.Context, plugin: Plugins = None,
                   output: OutputFormat = Format.table,
                   check: Annotated[bool, typer.Option(
                       "--check", help="Exit 5 when anything is pending or unknown")] = False,
                   ) -> None:
    """Show each plugin's current revision, its head and what is pending.

    Example: migrator status --check
    """
    settings = settings_from(ctx)
    report = commands.status(settings, plugin or [])
    document = report.as_dict()
    if output is Format.json:
        emit_json(document)
    else:
        table(["plugin", "schema", "current", "head", "state", "pending"],
               [[p["name"], p["schema"], p["current"], ", ".join(p["heads"]) or None, p["state"],
                 " ".join(p["pending"])] for p in document["plugins"]])
        if report.backfills:
            table(["plugin", "revision", "backfill", "status", "rows done", "batches"],
                   [[b["plugin"], b["revision"], b["name"], b["status"], b["rows_done"],
                     b["batches_done"]] for b in report.backfills], title="unfinished backfills")
    if check:
        commands.check_status(report)


@app.command("check")
@handled
def check_command(ctx: typer.Context, output: OutputFormat = Format.table) -> None:
    """Find edited applied revisions, unknown revisions, orphaned plugins, model drift and
    INVALID indexes; exit 5 on any finding. Reads only.

    Example: migrator check --format json
    """
    settings = settings_from(ctx)
    report = commands.check(settings)
    if output is Format.json:
        emit_json(report.as_dict())
    elif report.findings:
        table(["plugin", "finding", "revision or object", "what", "what to do"],
               [[f.plugin, f.kind, f.revision or f.object, f.message, f.action]
                for f in report.findings])
    else:
        typer.echo(f"check: no findings ({len(report.plugins_checked)} plugin(s) checked)")
    commands.check_findings(report)


@app.command("upgrade")
@handled
def upgrade_command(
    ctx: typer.Context, plugin: Plugins = None,
    to: Annotated[str | None, typer.Option(
        "--to", help="Stop at this revision (needs exactly one --plugin) [default: the head]",
        show_default=False)] = None,
    sql: Sql = False, dry_run: DryRun = False, start: FromRevision = None,
    output_dir: OutputDir = None, output: PlanFormatOption = None,
    lock_wait: LockWait = None, lock_timeout: LockTimeout = None, retries: Retries = None,
    isolate_roles: IsolateRoles = None, jobs: Jobs = None,
) -> None:
    """Apply pending revisions in dependency order (a named plugin's dependencies first).

    Review first: --sql prints the SQL offline, --dry-run the plan and SQL of what is pending.

    Example: migrator upgrade --plugin panels --dry-run --format markdown
    """
    review_flags(sql, dry_run, start, output_dir, output)
    settings = settings_from(ctx, **run_options(lock_wait, lock_timeout, retries, isolate_roles,
                                             jobs))
    if sql:
        emit_sql(previews.upgrade_sql(settings, plugin or [], start=start, to=to),
                  "migrator upgrade --sql", output_dir)
    elif dry_run:
        emit_review(previews.upgrade_dry_run(settings, plugin or [], to=to), output)
    else:
        from migrator import runs

        runs.upgrade(settings, plugin or [], to=to)


@app.command("downgrade")
@handled
def downgrade_command(
    ctx: typer.Context,
    plugin: Annotated[str, typer.Option("--plugin", "-p", help="The plugin to revert")],
    to: Annotated[str, typer.Option("--to", help="A revision, -N (N steps back) or base")],
    sql: Sql = False, dry_run: DryRun = False,
    start: Annotated[str | None, typer.Option(
        "--from", help="With --sql: start from this revision [default: the head]",
        show_default=False)] = None,
    output_dir: OutputDir = None, output: PlanFormatOption = None,
    cascade: Annotated[bool, typer.Option(
        "--cascade", help="First revert the applied plugins that depend on this one to base, "
        "dependents first")] = False,
    lock_wait: LockWait = None, lock_timeout: LockTimeout = None, retries: Retries = None,
    isolate_roles: IsolateRoles = None,
) -> None:
    """Revert one plugin to an earlier revision, N steps back, or to base.

    --sql prints the SQL offline (from the head, or --from); --dry-run shows what it would revert.
    When applied plugins depend on it, it refuses (exit 2) unless --cascade is given.

    Example: migrator downgrade --plugin panels --to -1
    """
    review_flags(sql, dry_run, start, output_dir, output)
    settings = settings_from(ctx, **run_options(lock_wait, lock_timeout, retries, isolate_roles,
                                             None))
    if sql:
        emit_sql(previews.downgrade_sql(settings, plugin, to, start=start, cascade=cascade),
                  "migrator downgrade --sql", output_dir)
    elif dry_run:
        emit_review(previews.downgrade_dry_run(settings, plugin, to, cascade=cascade), output)
    else:
        from migrator import runs

        runs.downgrade(settings, plugin, to, cascade=cascade)


@app.command("lint")
@handled
def lint_command(ctx: typer.Context, plugin: Plugins = None,
                 output: OutputFormat = Format.table,
                 pending: Annotated[bool, typer.Option(
                     "--pending", help="Only revisions the database has not applied (needs "
                     "a database)")] = False,
                 baseline: Annotated[Path | None, typer.Option(
                     "--baseline", help="Accept the findings listed in this file (written "
                     "by --write-baseline); only new ones count [default: none]",
                     show_default=False)] = None,
                 write_baseline: Annotated[Path | None, typer.Option(
                     "--write-baseline", help="Write the current findings to this file as "
                     "accepted, and exit 0 [default: none]", show_default=False)] = None) -> None:
    """Flag lock-unsafe DDL (squawk), changes outside a plugin's own schema and undeclared
    extensions in the revisions' SQL; exit 5 on findings. Needs no database (but --pending).

    Example: migrator lint --plugin panels --baseline lint-baseline.json
    """
    settings = settings_from(ctx)
    report = previews.lint(settings, plugin or [], pending=pending,
                           baseline=None if write_baseline else baseline)
    if write_baseline is not None:
        count = previews.write_lint_baseline(report, write_baseline)
        typer.echo(f"lint: {count} finding(s) accepted in {write_baseline}")
        return
    emit_lint(report, output)
    previews.lint_findings(report)


@app.command("stamp")
@handled
def stamp_command(
    ctx: typer.Context,
    revision: Annotated[str, typer.Argument(help="Revision id, head or base")],
    plugin: Annotated[str, typer.Option("--plugin", "-p", help="The plugin to stamp")],
    lock_wait: LockWait = None, lock_timeout: LockTimeout = None, retries: Retries = None,
    isolate_roles: IsolateRoles = None,
) -> None:
    """Record a revision as applied without running it (adopting an existing schema).

    Example: migrator stamp --plugin panels head
    """
    settings = settings_from(ctx, **run_options(lock_wait, lock_timeout, retries, isolate_roles,
                                             None))
    from migrator import runs

    runs.stamp(settings, plugin, revision)


@app.command("repair")
@handled
def repair_command(
    ctx: typer.Context,
    plugin: Annotated[str, typer.Option("--plugin", "-p", help="The plugin whose edits to "
                                        "accept")],
) -> None:
    """Accept intentional edits of applied revisions: record their current checksums
    (history rows with direction repair), so `check` no longer reports them.

    Example: migrator repair --plugin panels
    """
    settings = settings_from(ctx)
    commands.require_database(settings)
    from migrator import runs

    repaired = runs.repair(settings, plugin)
    for row in repaired:
        typer.echo(f"{plugin} {row['revision']}: checksum {row['old'][:12]} -> {row['new'][:12]}")
    typer.echo(f"repair: {len(repaired)} revision(s) of {plugin} accepted as edited")


@app.command("history")
@handled
def history_command(
    ctx: typer.Context,
    plugin: Annotated[str, typer.Option("--plugin", "-p", help="The plugin")],
    output: OutputFormat = Format.table,
) -> None:
    """Show a plugin's revisions (newest first) and its records in migrator.history.

    Example: migrator history --plugin panels
    """
    settings = settings_from(ctx)
    found, revisions, rows = commands.history(settings, plugin)
    if output is Format.json:
        emit_json({"plugin": found.name, "head": found.head, "heads": list(found.heads),
                   "revisions": [
            {"revision": r.revision, "down_revision": list(r.down_revisions),
             "file": r.filename, "message": r.message} for r in revisions],
            "records": rows})
        return
    table(["revision", "revises", "file", "message"],
           [[r.revision, ",".join(r.down_revisions) or "<base>", r.filename, r.message]
            for r in revisions], title=f"{found.name} revisions (newest first)")
    if rows:
        table(["started_at", "revision", "direction", "outcome", "ms", "applied_by", "error"],
               [[r["started_at"], r["revision"], r["direction"], r["outcome"], r["duration_ms"],
                 r["applied_by"], r["error"]] for r in rows], title="migrator.history")


@app.command("current")
@handled
def current_command(ctx: typer.Context, output: OutputFormat = Format.table) -> None:
    """Show each plugin's current revision in the database.

    Example: migrator current --format json
    """
    settings = settings_from(ctx)
    plan = commands.current(settings)
    rows = [{"name": p.name, "schema": p.plugin.schema, "current": p.current_label}
            for p in plan.plugins]
    if output is Format.json:
        emit_json({"plugins": rows})
    else:
        table(["plugin", "schema", "current"], [list(r.values()) for r in rows])


@app.command("heads")
@handled
def heads_command(ctx: typer.Context, output: OutputFormat = Format.table) -> None:
    """Show each plugin tree's head revision (no database needed).

    Example: migrator heads
    """
    settings = settings_from(ctx)
    found = commands.plugins(settings)
    if output is Format.json:
        emit_json({"plugins": [{"name": p.name, "head": p.head, "heads": list(p.heads)}
                               for p in found]})
    else:
        table(["plugin", "head"], [[p.name, ", ".join(p.heads) or None] for p in found])


@app.command("wait")
@handled
def wait_command(
    ctx: typer.Context,
    timeout: Annotated[str, typer.Option(
        "--timeout", help="Give up after this long and exit 3")] = "300s",
) -> None:
    """Wait until every plugin is at head (for application containers); exit 3 on timeout.

    Example: migrator wait --timeout 10m && exec my-platform
    """
    from migrator.config import parse_duration

    settings = settings_from(ctx)
    commands.wait(settings, timeout=parse_duration(timeout, what="--timeout"))


cli_tools.register(app)


if __name__ == "__main__":  # pragma: no cover
    app(prog_name="migrator")
    sys.exit(0)
