"""What the command line's commands share: the output formats, the options of the commands
that change the database, settings from flags, the one place errors become exit codes, and
rendering of tables, JSON, SQL scripts and reviews. Results go to stdout, logs to stderr."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from migrator import logs
from migrator.config import Settings
from migrator.errors import MigratorError

F = TypeVar("F", bound=Callable[..., Any])


class Format(StrEnum):
    table = "table"
    json = "json"


def handled(fn: F) -> F:
    """Turn migrator's errors into a one-line message on stderr and the documented exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except MigratorError as exc:
            message = logs.redact(str(exc))
            logs.get_logger().error("command.failed", error=message, exit_code=exc.exit_code,
                                    error_type=getattr(exc, "error_type", type(exc).__name__))
            typer.echo(f"migrator: error: {message}", err=True)
            raise typer.Exit(exc.exit_code) from None

    return wrapper  # type: ignore[return-value]  # functools.wraps keeps the signature typer reads


def settings_from(ctx: typer.Context, **run_options: Any) -> Settings:
    flags = dict(ctx.obj or {})
    flags.update({k: v for k, v in run_options.items() if v is not None})
    settings = Settings.from_sources(flags)
    logs.configure(log_format=settings.log_format, level=settings.log_level,
                   secrets=settings.secrets, verbose=settings.verbose)
    return settings


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
    "--jobs", help="Upgrade up to N independent plugins at once, in N worker processes "
    "[env: MIGRATOR_JOBS; default min(CPUs, 2)]",
    show_default=False)]
Plugins = Annotated[list[str] | None, typer.Option(
    "--plugin", "-p", help="Only this plugin (repeatable) [default: every plugin]",
    show_default=False)]
OutputFormat = Annotated[Format, typer.Option("--format", help="table or json")]


def run_options(lock_wait: str | None, lock_timeout: str | None, retries: int | None,
                 isolate_roles: bool | None, jobs: int | None) -> dict[str, Any]:
    return {"lock_wait": lock_wait, "lock_timeout": lock_timeout, "retries": retries,
            "isolate_roles": isolate_roles or None, "jobs": jobs}


def emit_json(document: Any) -> None:
    typer.echo(json.dumps(document, indent=2, default=str))


def table(columns: list[str], rows: list[list[Any]], *, title: str | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(*columns, title=title, box=None, pad_edge=False, header_style="bold")
    for row in rows:
        table.add_row(*["" if v is None else str(v) for v in row])
    console = Console(soft_wrap=True)
    if not console.is_terminal:
        console.width = 250  # piped output: never truncate ids and paths
    console.print(table)


class PlanFormat(StrEnum):
    text = "text"
    json = "json"
    markdown = "markdown"


Sql = Annotated[bool, typer.Option(
    "--sql", help="Print the SQL offline (no database) instead of running it; see --from")]
DryRun = Annotated[bool, typer.Option(
    "--dry-run", help="Show the plan and the SQL of exactly what is pending, with each "
    "statement's locks; reads the database in a READ ONLY transaction, changes nothing")]
FromRevision = Annotated[str | None, typer.Option(
    "--from", help="With --sql: start from this revision (needs exactly one --plugin) "
    "[default: base]",
    show_default=False)]
OutputDir = Annotated[Path | None, typer.Option(
    "--output-dir", help="With --sql: write one <plugin>.sql per plugin into this directory "
    "[default: standard output]",
    show_default=False)]
PlanFormatOption = Annotated[PlanFormat | None, typer.Option(
    "--format", help="With --dry-run: text (SQL with lock comments), json or markdown "
    "[default: text]",
    show_default=False)]


def review_flags(sql: bool, dry_run: bool, start: str | None, output_dir: Path | None,
                  output: PlanFormat | None) -> None:
    from migrator.errors import UsageError

    if sql and dry_run:
        raise UsageError("--sql and --dry-run exclude each other: --sql renders offline, "
                         "--dry-run reads what is pending from the database")
    if not sql and (start is not None or output_dir is not None):
        raise UsageError("--from and --output-dir go with --sql")
    if output is not None and not dry_run:
        raise UsageError("--format goes with --dry-run (--sql always prints SQL)")


def emit_sql(rendered: list[Any], command: str, output_dir: Path | None) -> None:
    from migrator.sql_script import ScriptHeader, format_script

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


def emit_review(review: Any, output: PlanFormat | None) -> None:
    from migrator.review_format import format_markdown, format_text

    if output is PlanFormat.json:
        emit_json(review.as_dict())
    elif output is PlanFormat.markdown:
        typer.echo(format_markdown(review), nl=False)
    else:
        typer.echo(format_text(review), nl=False)


def shown(path: Any) -> str:
    """`path` relative to the working directory when it is below it."""
    from pathlib import Path

    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def emit_lint(report: Any, output: Format) -> None:
    """`lint`'s findings: one line each with the object named, the statement, squawk's help;
    then the skipped revisions and a count."""
    if output is Format.json:
        emit_json(report.as_dict())
    else:
        for finding in report.findings:
            where = finding.file + (f" statement {finding.statement}"
                                    if finding.statement else "")
            what = f" ({finding.object})" if finding.object else ""
            typer.echo(f"{where}: {finding.rule}{what}: {finding.message} "
                       f"[{finding.plugin} {finding.revision}]")
            if finding.sql:
                first = " ".join(finding.sql.split())
                typer.echo(f"    {first[:117] + '...' if len(first) > 120 else first}")
            if finding.help:
                typer.echo(f"    help: {finding.help}")
        for skipped in report.skipped:
            typer.echo(f"{skipped.file}: skipped, cannot be shown offline: {skipped.why} "
                       f"[{skipped.plugin} {skipped.revision}]")
        typer.echo(f"lint: {len(report.findings)} finding(s), {len(report.silenced)} silenced "
                   f"by a reasoned opt-out, {len(report.baselined)} accepted by the baseline; "
                   f"{report.revisions} revision(s) of {len(report.plugins)} plugin(s) checked, "
                   f"{len(report.skipped)} skipped")
