"""The command line: flags → `Settings`, call a verb in `commands`, render, map errors to exits.

typer is imported only here. Results go to stdout, logs to stderr.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from migrator import commands, logs
from migrator.config import Settings
from migrator.errors import MigratorError

app = typer.Typer(
    name="migrator",
    help="Apply each plugin's Alembic revisions to its own PostgreSQL schema, lock-safely.\n\n"
         "Example: migrator --database-url postgresql://app@db/platform upgrade",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals would include the database URL
    context_settings={"help_option_names": ["-h", "--help"]},
)

F = TypeVar("F", bound=Callable[..., Any])


class Format(StrEnum):
    table = "table"
    json = "json"


def _handled(fn: F) -> F:
    """Turn migrator's errors into a one-line message on stderr and the documented exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except MigratorError as exc:
            message = logs.redact(str(exc))
            logs.get_logger().error("command.failed", error=message, exit_code=exc.exit_code,
                                    error_type=type(exc).__name__)
            typer.echo(f"migrator: error: {message}", err=True)
            raise typer.Exit(exc.exit_code) from None

    return wrapper  # type: ignore[return-value]  # functools.wraps keeps the signature typer reads


def _settings(ctx: typer.Context, **run_options: Any) -> Settings:
    flags = dict(ctx.obj or {})
    flags.update({k: v for k, v in run_options.items() if v is not None})
    settings = Settings.from_sources(flags)
    logs.configure(log_format=settings.log_format, level=settings.log_level,
                   secrets=settings.secrets)
    return settings


@app.callback()
def main(
    ctx: typer.Context,
    database_url: Annotated[str | None, typer.Option(
        "--database-url", help="PostgreSQL URL [env: MIGRATOR_DATABASE_URL, then "
        "MIGRATOR_DATABASE_URL_FILE]", show_default=False)] = None,
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
        "--log-format", help="auto | json | console [env: MIGRATOR_LOG_FORMAT]",
        show_default=False)] = None,
    log_level: Annotated[str | None, typer.Option(
        "--log-level", help="debug | info | warning | error [env: MIGRATOR_LOG_LEVEL]",
        show_default=False)] = None,
) -> None:
    """Apply each plugin's Alembic revisions to its own PostgreSQL schema, lock-safely.

    Example: migrator --database-url postgresql://app@db/platform upgrade
    """
    ctx.obj = {"database_url": database_url, "migrations_dir": migrations_dir,
               "embedded": embedded or None, "connect_timeout": connect_timeout,
               "log_format": log_format, "log_level": log_level}
    # Until the settings are read (they may be invalid), errors still go to stderr.
    logs.configure(log_format=log_format if log_format in ("json", "console") else "auto")


LockWait = Annotated[str | None, typer.Option(
    "--lock-wait", help="Give up waiting for a plugin's lock after this long, exit 3 "
    "[env: MIGRATOR_LOCK_WAIT; default 300s]", show_default=False)]
LockTimeout = Annotated[str | None, typer.Option(
    "--lock-timeout", help="lock_timeout for each revision's statements "
    "[env: MIGRATOR_LOCK_TIMEOUT; default 5s]", show_default=False)]
Retries = Annotated[int | None, typer.Option(
    "--retries", help="Retries after a lock timeout [env: MIGRATOR_RETRIES; default 5]",
    show_default=False)]
IsolateRoles = Annotated[bool | None, typer.Option(
    "--isolate-roles", help="Run each plugin under its own role [env: MIGRATOR_ISOLATE_ROLES=1]",
    show_default=False)]
Jobs = Annotated[int | None, typer.Option(
    "--jobs", help="Upgrade up to N independent plugins at once [env: MIGRATOR_JOBS; default 1]",
    show_default=False)]
Plugins = Annotated[list[str] | None, typer.Option(
    "--plugin", "-p", help="Only this plugin (repeatable)", show_default=False)]
OutputFormat = Annotated[Format, typer.Option("--format", help="table or json")]


def _run_options(lock_wait: str | None, lock_timeout: str | None, retries: int | None,
                 isolate_roles: bool | None, jobs: int | None) -> dict[str, Any]:
    return {"lock_wait": lock_wait, "lock_timeout": lock_timeout, "retries": retries,
            "isolate_roles": isolate_roles or None, "jobs": jobs}


def _emit_json(document: Any) -> None:
    typer.echo(json.dumps(document, indent=2, default=str))


def _table(columns: list[str], rows: list[list[Any]], *, title: str | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(*columns, title=title, box=None, pad_edge=False, header_style="bold")
    for row in rows:
        table.add_row(*["" if v is None else str(v) for v in row])
    console = Console(soft_wrap=True)
    if not console.is_terminal:
        console.width = 250  # piped output: never truncate ids and paths
    console.print(table)


@app.command("plugins")
@_handled
def plugins_command(ctx: typer.Context, output: OutputFormat = Format.table) -> None:
    """List discovered plugins: name, schema, source, dependencies and head revision.

    Example: migrator plugins --format json
    """
    settings = _settings(ctx)
    found = commands.plugins(settings)
    document = {"plugins": [{"name": p.name, "schema": p.schema, "source": p.source,
                             "depends_on": list(p.depends_on), "head": p.head} for p in found]}
    if output is Format.json:
        _emit_json(document)
    else:
        _table(["plugin", "schema", "depends on", "head", "source"],
               [[p.name, p.schema, ", ".join(p.depends_on), p.head, p.source] for p in found])


@app.command("status")
@_handled
def status_command(ctx: typer.Context, plugin: Plugins = None,
                   output: OutputFormat = Format.table,
                   check: Annotated[bool, typer.Option(
                       "--check", help="Exit 5 when anything is pending or unknown")] = False,
                   ) -> None:
    """Show each plugin's current revision, its head and what is pending.

    Example: migrator status --check
    """
    settings = _settings(ctx)
    report = commands.status(settings, plugin or [])
    document = report.as_dict()
    if output is Format.json:
        _emit_json(document)
    else:
        _table(["plugin", "schema", "current", "head", "state", "pending"],
               [[p["name"], p["schema"], p["current"], p["head"], p["state"],
                 " ".join(p["pending"])] for p in document["plugins"]])
        if report.backfills:
            _table(["plugin", "revision", "backfill", "status", "rows done", "batches"],
                   [[b["plugin"], b["revision"], b["name"], b["status"], b["rows_done"],
                     b["batches_done"]] for b in report.backfills], title="unfinished backfills")
    if check:
        commands.check_status(report)


@app.command("check")
@_handled
def check_command(ctx: typer.Context, output: OutputFormat = Format.table) -> None:
    """Find edited applied revisions, unknown revisions, orphaned plugins, model drift and
    INVALID indexes; exit 5 on any finding. Reads only.

    Example: migrator check --format json
    """
    settings = _settings(ctx)
    report = commands.check(settings)
    if output is Format.json:
        _emit_json(report.as_dict())
    elif report.findings:
        _table(["plugin", "finding", "revision or object", "what", "what to do"],
               [[f.plugin, f.kind, f.revision or f.object, f.message, f.action]
                for f in report.findings])
    else:
        typer.echo(f"check: no findings ({len(report.plugins_checked)} plugin(s) checked)")
    commands.check_findings(report)


class PlanFormat(StrEnum):
    text = "text"
    json = "json"
    markdown = "markdown"


Sql = Annotated[bool, typer.Option(
    "--sql", help="Print the SQL offline (no database): from base, or --from, to the target")]
DryRun = Annotated[bool, typer.Option(
    "--dry-run", help="Show the plan and the SQL of exactly what is pending, with each "
    "statement's locks; reads the database in a READ ONLY transaction, changes nothing")]
FromRevision = Annotated[str | None, typer.Option(
    "--from", help="With --sql: start from this revision (needs exactly one --plugin)",
    show_default=False)]
OutputDir = Annotated[Path | None, typer.Option(
    "--output-dir", help="With --sql: write one <plugin>.sql per plugin into this directory",
    show_default=False)]
PlanFormatOption = Annotated[PlanFormat | None, typer.Option(
    "--format", help="With --dry-run: text (SQL with lock comments), json or markdown",
    show_default=False)]


def _review_flags(sql: bool, dry_run: bool, start: str | None, output_dir: Path | None,
                  output: PlanFormat | None) -> None:
    from migrator.errors import UsageError

    if sql and dry_run:
        raise UsageError("--sql and --dry-run exclude each other: --sql renders offline, "
                         "--dry-run reads what is pending from the database")
    if not sql and (start is not None or output_dir is not None):
        raise UsageError("--from and --output-dir go with --sql")
    if output is not None and not dry_run:
        raise UsageError("--format goes with --dry-run (--sql always prints SQL)")


def _emit_sql(rendered: list[Any], command: str, output_dir: Path | None) -> None:
    from migrator.sql_output import ScriptHeader, format_script

    header = ScriptHeader(command=command)
    if output_dir is None:
        typer.echo(format_script(rendered, header), nl=False)
        return
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        for item in rendered:
            path = output_dir / f"{item.plugin.name}.sql"
            path.write_text(format_script([item], header), encoding="utf-8")
            typer.echo(str(path))
    except OSError as exc:
        from migrator.errors import UsageError

        raise UsageError(f"--output-dir {output_dir}: cannot write ({exc.strerror}); pick a "
                         "writable directory") from None


def _emit_review(review: Any, output: PlanFormat | None) -> None:
    from migrator.review import format_markdown, format_text

    if output is PlanFormat.json:
        _emit_json(review.as_dict())
    elif output is PlanFormat.markdown:
        typer.echo(format_markdown(review), nl=False)
    else:
        typer.echo(format_text(review), nl=False)


@app.command("upgrade")
@_handled
def upgrade_command(
    ctx: typer.Context, plugin: Plugins = None,
    to: Annotated[str | None, typer.Option(
        "--to", help="Stop at this revision (needs exactly one --plugin)",
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
    _review_flags(sql, dry_run, start, output_dir, output)
    settings = _settings(ctx, **_run_options(lock_wait, lock_timeout, retries, isolate_roles,
                                             jobs))
    if sql:
        _emit_sql(commands.upgrade_sql(settings, plugin or [], start=start, to=to),
                  "migrator upgrade --sql", output_dir)
    elif dry_run:
        _emit_review(commands.upgrade_dry_run(settings, plugin or [], to=to), output)
    else:
        from migrator import runs

        runs.upgrade(settings, plugin or [], to=to)


@app.command("downgrade")
@_handled
def downgrade_command(
    ctx: typer.Context,
    plugin: Annotated[str, typer.Option("--plugin", "-p", help="The plugin to revert")],
    to: Annotated[str, typer.Option("--to", help="A revision, -N (N steps back) or base")],
    sql: Sql = False, dry_run: DryRun = False,
    start: Annotated[str | None, typer.Option(
        "--from", help="With --sql: start from this revision instead of the head",
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
    _review_flags(sql, dry_run, start, output_dir, output)
    settings = _settings(ctx, **_run_options(lock_wait, lock_timeout, retries, isolate_roles,
                                             None))
    if sql:
        _emit_sql(commands.downgrade_sql(settings, plugin, to, start=start, cascade=cascade),
                  "migrator downgrade --sql", output_dir)
    elif dry_run:
        _emit_review(commands.downgrade_dry_run(settings, plugin, to, cascade=cascade), output)
    else:
        from migrator import runs

        runs.downgrade(settings, plugin, to, cascade=cascade)


@app.command("lint")
@_handled
def lint_command(ctx: typer.Context, plugin: Plugins = None,
                 output: OutputFormat = Format.table) -> None:
    """Flag lock-unsafe DDL (squawk) and changes outside a plugin's own schema in every
    revision's SQL; exit 5 on findings. Needs no database.

    Example: migrator lint --plugin panels
    """
    settings = _settings(ctx)
    report = commands.lint(settings, plugin or [])
    if output is Format.json:
        _emit_json(report.as_dict())
    else:
        for finding in report.findings:
            where = finding.file + (f" statement {finding.statement}"
                                    if finding.statement else "")
            typer.echo(f"{where}: {finding.rule}: {finding.message} "
                       f"[{finding.plugin} {finding.revision}]")
            if finding.sql:
                first = " ".join(finding.sql.split())
                typer.echo(f"    {first[:117] + '...' if len(first) > 120 else first}")
            if finding.help:
                typer.echo(f"    help: {finding.help}")
        typer.echo(f"lint: {len(report.findings)} finding(s), {len(report.silenced)} silenced "
                   f"by a reasoned opt-out; {report.revisions} revision(s) of "
                   f"{len(report.plugins)} plugin(s) checked")
    commands.lint_findings(report)


@app.command("stamp")
@_handled
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
    settings = _settings(ctx, **_run_options(lock_wait, lock_timeout, retries, isolate_roles,
                                             None))
    from migrator import runs

    runs.stamp(settings, plugin, revision)


@app.command("repair")
@_handled
def repair_command(
    ctx: typer.Context,
    plugin: Annotated[str, typer.Option("--plugin", "-p", help="The plugin whose edits to "
                                        "accept")],
) -> None:
    """Accept intentional edits of applied revisions: record their current checksums
    (history rows with direction repair), so `check` no longer reports them.

    Example: migrator repair --plugin panels
    """
    settings = _settings(ctx)
    commands.require_database(settings)
    from migrator import runs

    repaired = runs.repair(settings, plugin)
    for row in repaired:
        typer.echo(f"{plugin} {row['revision']}: checksum {row['old'][:12]} -> {row['new'][:12]}")
    typer.echo(f"repair: {len(repaired)} revision(s) of {plugin} accepted as edited")


@app.command("history")
@_handled
def history_command(
    ctx: typer.Context,
    plugin: Annotated[str, typer.Option("--plugin", "-p", help="The plugin")],
    output: OutputFormat = Format.table,
) -> None:
    """Show a plugin's revisions (newest first) and its records in migrator.history.

    Example: migrator history --plugin panels
    """
    settings = _settings(ctx)
    found, rows = commands.history(settings, plugin)
    from migrator.plan import oldest_first

    order = oldest_first(found, {r.revision for r in found.revisions})[::-1]
    revisions = [found.revision(rev) for rev in order]
    if output is Format.json:
        _emit_json({"plugin": found.name, "head": found.head, "revisions": [
            {"revision": r.revision, "down_revision": list(r.down_revisions),
             "file": r.filename, "message": r.message} for r in revisions if r],
            "records": rows})
        return
    _table(["revision", "revises", "file", "message"],
           [[r.revision, ",".join(r.down_revisions) or "<base>", r.filename, r.message]
            for r in revisions if r], title=f"{found.name} revisions (newest first)")
    if rows:
        _table(["started_at", "revision", "direction", "outcome", "ms", "applied_by", "error"],
               [[r["started_at"], r["revision"], r["direction"], r["outcome"], r["duration_ms"],
                 r["applied_by"], r["error"]] for r in rows], title="migrator.history")


@app.command("current")
@_handled
def current_command(ctx: typer.Context, output: OutputFormat = Format.table) -> None:
    """Show each plugin's current revision in the database.

    Example: migrator current --format json
    """
    settings = _settings(ctx)
    plan = commands.current(settings)
    rows = [{"name": p.name, "schema": p.plugin.schema, "current": p.current_label}
            for p in plan.plugins]
    if output is Format.json:
        _emit_json({"plugins": rows})
    else:
        _table(["plugin", "schema", "current"], [list(r.values()) for r in rows])


@app.command("heads")
@_handled
def heads_command(ctx: typer.Context, output: OutputFormat = Format.table) -> None:
    """Show each plugin tree's head revision (no database needed).

    Example: migrator heads
    """
    settings = _settings(ctx)
    rows = [{"name": p.name, "head": p.head} for p in commands.plugins(settings)]
    if output is Format.json:
        _emit_json({"plugins": rows})
    else:
        _table(["plugin", "head"], [list(r.values()) for r in rows])


@app.command("wait")
@_handled
def wait_command(
    ctx: typer.Context,
    timeout: Annotated[str, typer.Option(
        "--timeout", help="Give up after this long and exit 3")] = "300s",
) -> None:
    """Wait until every plugin is at head (for application containers); exit 3 on timeout.

    Example: migrator wait --timeout 10m && exec my-platform
    """
    from migrator.config import parse_duration

    settings = _settings(ctx)
    commands.wait(settings, timeout=parse_duration(timeout, what="--timeout"))


@app.command("new-plugin")
@_handled
def new_plugin_command(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Plugin name: ^[a-z][a-z0-9_]{0,47}$")],
    schema: Annotated[str | None, typer.Option(
        "--schema", help="Its schema (default: the plugin name)", show_default=False)] = None,
    depends_on: Annotated[list[str] | None, typer.Option(
        "--depends-on", help="A plugin migrated before it (repeatable)",
        show_default=False)] = None,
    description: Annotated[str, typer.Option("--description", help="One line")] = "",
) -> None:
    """Create <migrations-dir>/NAME/versions/ and a commented plugin.toml (no database).

    Example: migrator new-plugin reports --depends-on core
    """
    settings = _settings(ctx)
    path = commands.new_plugin(settings, name, schema=schema, depends_on=depends_on or [],
                               description=description)
    typer.echo(f"created {_shown(path)}/plugin.toml and {_shown(path)}/versions/; next: "
               f"migrator revision --plugin {name} -m \"create {name} tables\"")


@app.command("revision")
@_handled
def revision_command(
    ctx: typer.Context,
    plugin: Annotated[str, typer.Option("--plugin", "-p", help="The plugin")],
    message: Annotated[str, typer.Option("--message", "-m", help="What the revision does")],
    autogenerate: Annotated[bool, typer.Option(
        "--autogenerate", help="Compare the plugin's models with its schema in the database "
        "(at head) and write the difference")] = False,
    rev_id: Annotated[str | None, typer.Option(
        "--rev-id", help="Use this revision id instead of a generated one",
        show_default=False)] = None,
) -> None:
    """Write a new revision file in the plugin's tree (a merge revision when it has two heads).

    Example: migrator --embedded revision --plugin panels -m "add panel score" --autogenerate
    """
    settings = _settings(ctx)
    new = commands.revision(settings, plugin, message, autogenerate=autogenerate, rev_id=rev_id)
    revises = ", ".join(new.down_revisions) or "base"
    typer.echo(f"created {_shown(new.path)} (revision {new.revision}, revises {revises})")
    if autogenerate:
        for change in new.changes:
            typer.echo(f"  detected {change}")
        if not new.changes:
            typer.echo("  no changes detected: upgrade() and downgrade() are empty")


def _shown(path: Any) -> str:
    """`path` relative to the working directory when it is below it."""
    from pathlib import Path

    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


if __name__ == "__main__":  # pragma: no cover
    app(prog_name="migrator")
    sys.exit(0)
