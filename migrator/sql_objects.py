"""The object a lint finding is about, named for people: `column orders.region`,
`constraint fk on orders`, `index ix on orders`, `schema legacy`, `extension citext`."""

from __future__ import annotations

import re

from migrator.sql_scan import analyze

_SPAN_OBJECTS = (
    # `DROP INDEX ix` names no table (the relation it changes is the index itself).
    (re.compile(r"\bDROP\s+INDEX\s+(?:CONCURRENTLY\s+)?(?:IF\s+EXISTS\s+)?"
                r"(?P<name>\"(?:[^\"]|\"\")+\"|[\w$.]+)", re.I), "dropped index"),
    (re.compile(r"\bALTER\s+COLUMN\s+(?P<name>\"(?:[^\"]|\"\")+\"|[\w$]+)", re.I), "column"),
    (re.compile(r"\bCONSTRAINT\s+(?P<name>\"(?:[^\"]|\"\")+\"|[\w$]+)", re.I), "constraint"),
    (re.compile(r"\bADD\s+(?:COLUMN\s+)?(?:IF\s+NOT\s+EXISTS\s+)?"
                r"(?P<name>\"(?:[^\"]|\"\")+\"|[\w$]+)", re.I), "column"),
    (re.compile(r"\bINDEX\s+(?:CONCURRENTLY\s+)?(?:IF\s+NOT\s+EXISTS\s+)?"
                r"(?P<name>\"(?:[^\"]|\"\")+\"|[\w$.]+)\s+ON\b", re.I), "index"),
    (re.compile(r"\bDROP\s+COLUMN\s+(?:IF\s+EXISTS\s+)?(?P<name>\"(?:[^\"]|\"\")+\"|[\w$]+)",
                re.I), "column"),
)


def object_named(statement: str, span: str | None = None) -> str | None:
    """The object a finding is about, e.g. `column orders.region`, `constraint fk on orders`,
    `index ix on orders`, `schema legacy`, `extension citext`, else the table the statement
    changes; `span` is the part of the statement the finding points at, when known."""
    found = analyze(statement)
    table = next((str(n) for n in found.changes), None) or next(
        (str(lock.relation) for lock in found.locks), None)
    if found.extensions:
        return f"extension {found.extensions[0]}"
    if found.dropped_schemas:
        return f"schema {found.dropped_schemas[0]}"
    for text in (span, statement):
        if not text:
            continue
        for pattern, kind in _SPAN_OBJECTS:
            match = pattern.search(text)
            if match is None or match.group("name").upper() in ("CONSTRAINT", "COLUMN"):
                continue
            name = match.group("name").strip('"')
            if kind == "column" and match.group("name").upper() in ("PRIMARY", "UNIQUE",
                                                                      "FOREIGN", "CHECK"):
                continue
            if kind == "column":
                return f"column {table}.{name}" if table else f"column {name}"
            if kind == "dropped index":
                return f"index {name}"
            return f"{kind} {name} on {table}" if table else f"{kind} {name}"
    return f"table {table}" if table else None
