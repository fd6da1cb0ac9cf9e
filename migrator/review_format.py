"""A dry run's review as people read it: plain text (the SQL with lock comments) and
Markdown (for a pull-request comment)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from migrator.review import Note, Review
from migrator.sql_output import (
    UNRENDERABLE,
    UP,
    RenderedPlugin,
    RenderedRevision,
    Statement,
)
from migrator.sql_script import ScriptHeader, format_script


def _plan_lines(review: Review) -> list[str]:
    lines = []
    width = max((len(item.name) for item in review.plan.plugins), default=0)
    by_name = {p.plugin.name: p for p in review.rendered}
    for item in review.plan.plugins:
        rendered = by_name.get(item.name)
        if rendered is None:
            lines.append(f"{item.name:<{width}}  {item.state.replace('_', ' ')} at "
                         f"{item.current_label or 'base'}")
        else:
            count = len(rendered.revisions)
            lines.append(f"{item.name:<{width}}  {rendered.start_label} -> {rendered.end_label}"
                         f"  ({count} revision{'' if count == 1 else 's'} to "
                         f"{'apply' if rendered.direction == UP else 'revert'})")
    return lines


def format_text(review: Review) -> str:
    """The plan, then the SQL of the pending revisions with a `-- lock:` line per lock."""
    count = review.pending_revisions
    headline = (f"{count} revision{'' if count == 1 else 's'} to "
                f"{'apply' if review.command == 'upgrade' else 'revert'}") if count \
        else "nothing pending"
    header = ScriptHeader(
        command=f"migrator {review.command} --dry-run: {headline}",
        notes=("Read in a READ ONLY transaction: nothing was changed.",
               *(f"  {line}" for line in _plan_lines(review)),
               "Each statement's locks: mode, table, the catalog's row estimate."))
    if not review.rendered:
        return format_script((), header, include_records=False)

    def annotate(plugin: RenderedPlugin, revision: RenderedRevision, index: int,
                 statement: Statement) -> list[str]:
        if not statement.own or statement.kind == UNRENDERABLE:
            return []  # its own comment says why it cannot be shown
        note = review.note(plugin, revision, index)
        if note is None:
            return []
        lines = [f"-- lock: {lock.describe()}" for lock in note.locks]
        if statement.backfill is not None:
            lines += _backfill_lines(statement.backfill, note)
        elif not note.locks:
            lines.append("-- lock: none on existing tables" if note.known
                         else f"-- lock: not known for {note.verb or 'this statement'}")
        return lines

    return format_script(review.rendered, header, annotate=annotate, include_records=False)


def _backfill_lines(spec: Mapping[str, Any], note: Note) -> list[str]:
    estimate = _backfill_rows(note)
    what = f"set {spec['set']}" if spec.get("set") else f"transform {spec.get('transform')}"
    where = f" where {spec['where']}" if spec.get("where") else ""
    return [f"-- backfill {spec['name']!r} on {spec['table']} ({estimate}): {what}{where}; "
            f"key {', '.join(spec['key'])}, batches of {spec['batch_size']}, outside the "
            "transaction, resumable"]


def format_markdown(review: Review) -> str:
    """The plan as a pull-request comment: a summary table, then per revision its statements
    with their locks and row estimates, and the SQL folded away."""
    verb = "apply" if review.command == "upgrade" else "revert"
    lines = [f"### migrator {review.command} plan", "",
             f"{review.pending_revisions} revision(s) to {verb}. Read from the database in a "
             "READ ONLY transaction; nothing was changed.", "",
             "| plugin | schema | from | to | pending |", "|---|---|---|---|---:|"]
    by_name = {p.plugin.name: p for p in review.rendered}
    for item in review.plan.plugins:
        rendered = by_name.get(item.name)
        start = _code(item.current_label) if item.current_label else "base"
        if rendered is None:
            lines.append(f"| `{item.name}` | `{item.plugin.schema}` | {start} | {start} | "
                         f"{item.state.replace('_', ' ')} |")
        else:
            end = _code(rendered.end_label) if rendered.end else "base"
            lines.append(f"| `{item.name}` | `{item.plugin.schema}` | {start} | {end} | "
                         f"{len(rendered.revisions)} |")
    for plugin in review.rendered:
        end = _code(plugin.end_label) if plugin.end else "base"
        start = _code(plugin.start_label) if plugin.start else "base"
        lines += ["", f"#### `{plugin.plugin.name}`: {start} → {end}"]
        for revision in plugin.revisions:
            lines += ["", f"**{_code(revision.revision)}** {_escape(revision.message)} — "
                          f"`{revision.file}`, "
                          + (f"**cannot be shown offline**: {_escape(revision.unrenderable)}"
                             if revision.unrenderable is not None
                             else "one transaction" if revision.transaction == "transactional"
                             else "autocommit block (outside a transaction)"), "",
                      "| # | statement | locks | rows (est.) |", "|---:|---|---|---|"]
            number = 0
            for index, statement in enumerate(revision.statements):
                if not statement.own:
                    continue
                number += 1
                note = review.note(plugin, revision, index)
                lines.append(f"| {number} | {_summary(statement)} | {_locks_cell(note)} | "
                             f"{_rows_cell(statement, note)} |")
            sql = "\n".join(s.sql for s in revision.statements)
            lines += ["", "<details><summary>SQL</summary>", "", "```sql", sql, "```", "",
                      "</details>"]
    return "\n".join(lines) + "\n"


def _code(text: str) -> str:
    return f"`{text}`"


def _escape(text: str) -> str:
    return text.replace("|", "\\|").replace("<", "&lt;")


def _backfill_rows(note: Note) -> str:
    if not note.backfill_table_exists:
        return "new table"
    if note.backfill_rows is None:
        return "rows unknown (never analyzed)"
    return f"~{note.backfill_rows:,} rows"


def _summary(statement: Statement) -> str:
    if statement.kind == UNRENDERABLE:
        return "(stops the script: apply this revision with migrator)"
    if statement.backfill is not None:
        spec = statement.backfill
        return f"backfill `{spec['name']}` on `{spec['table']}`"
    first = statement.sql.split("\n", 1)[0].rstrip(" (")
    if len(first) > 70:
        first = first[:67].rstrip() + "..."
    return "`" + first.replace("`", "'").replace("|", "\\|") + "`"


def _locks_cell(note: Note | None) -> str:
    if note is not None and note.verb == "BACKFILL":
        return "ROW EXCLUSIVE per batch (one short transaction each)"
    if note is not None and note.verb == "UNRENDERABLE":
        return "not known: cannot be shown offline"
    if note is None or not note.locks:
        if note is not None and not note.known:
            return f"not known ({_escape(note.verb)})"
        return "none on existing tables"
    cells = []
    for lock in note.locks:
        text = f"{lock.mode} on `{lock.table}`"
        if lock.risky:
            text += f" — **{lock.blocks}**"
        cells.append(text)
    return "<br>".join(cells)


def _rows_cell(statement: Statement, note: Note | None) -> str:
    if note is None:
        return ""
    if statement.backfill is not None:
        return _backfill_rows(note)
    return "<br>".join(lock.rows_text for lock in note.locks)
