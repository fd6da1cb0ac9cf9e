"""What a rendered SQL statement touches: the table locks it takes, the objects it changes, the
tables its foreign keys reference, the schemas it creates or drops.

`--dry-run` uses it to annotate each statement with its lock (and the table's row estimate);
`lint` uses it for migrator's isolation rules. It reads statement *heads* with a small tokenizer
(strings, quoted identifiers, comments and dollar quotes are understood, so a keyword inside a
literal never matches), not a full grammar: the contract's stack has no SQL parser, and the
statements it sees are SQLAlchemy's regular DDL plus the occasional `op.execute`. A statement it
does not recognise is reported as such (`Analysis.known` false), never guessed at.

Lock levels follow PostgreSQL's documentation ("Explicit Locking", and each command's page).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from migrator.sql_tokens import (
    Cursor,
    Name,
    Token,
    is_punct,
    references,
    split,
    top_level_parts,
)

ACCESS_SHARE = "ACCESS SHARE"
ROW_SHARE = "ROW SHARE"
ROW_EXCLUSIVE = "ROW EXCLUSIVE"
SHARE_UPDATE_EXCLUSIVE = "SHARE UPDATE EXCLUSIVE"
SHARE = "SHARE"
SHARE_ROW_EXCLUSIVE = "SHARE ROW EXCLUSIVE"
EXCLUSIVE = "EXCLUSIVE"
ACCESS_EXCLUSIVE = "ACCESS EXCLUSIVE"
MODES = (ACCESS_SHARE, ROW_SHARE, ROW_EXCLUSIVE, SHARE_UPDATE_EXCLUSIVE, SHARE,
         SHARE_ROW_EXCLUSIVE, EXCLUSIVE, ACCESS_EXCLUSIVE)


def blocks(mode: str) -> str:
    """What a lock in `mode` does to the application's traffic on the table."""
    if mode == ACCESS_EXCLUSIVE:
        return "blocks reads and writes"
    if mode in (SHARE, SHARE_ROW_EXCLUSIVE, EXCLUSIVE):
        return "blocks writes"
    return "allows reads and writes"


@dataclass(frozen=True, slots=True)
class Lock:
    """A lock a statement takes on a relation (`index`: the relation named is an index)."""

    mode: str
    relation: Name
    new: bool = False  # the statement creates the relation
    index: bool = False


@dataclass(frozen=True, slots=True)
class Analysis:
    verb: str  # "CREATE INDEX", "ALTER TABLE", ... ("" for an empty statement)
    known: bool
    locks: tuple[Lock, ...] = ()
    changes: tuple[Name, ...] = ()  # objects created, altered, dropped or written
    references: tuple[Name, ...] = ()  # tables a foreign key references
    schemas: tuple[str, ...] = ()  # schemas created, altered, granted on or moved into
    dropped_schemas: tuple[str, ...] = ()
    sets_search_path: bool = False
    extensions: tuple[str, ...] = ()  # extensions created


# -- statements -----------------------------------------------------------------------------


def analyze(text: str) -> Analysis:
    """Everything the statements in `text` touch, merged (one op.execute may hold several)."""
    parts = [_analyze(tokens) for tokens in split(text)]
    if not parts:
        return Analysis(verb="", known=True)
    if len(parts) == 1:
        return parts[0]
    return Analysis(
        verb="; ".join(p.verb for p in parts), known=all(p.known for p in parts),
        locks=tuple(lock for p in parts for lock in p.locks),
        changes=tuple(n for p in parts for n in p.changes),
        references=tuple(n for p in parts for n in p.references),
        schemas=tuple(s for p in parts for s in p.schemas),
        dropped_schemas=tuple(s for p in parts for s in p.dropped_schemas),
        sets_search_path=any(p.sets_search_path for p in parts),
        extensions=tuple(e for p in parts for e in p.extensions))


@dataclass(slots=True)
class _Found:
    verb: str
    known: bool = True
    locks: list[Lock] = field(default_factory=list)
    changes: list[Name] = field(default_factory=list)
    references: list[Name] = field(default_factory=list)
    schemas: list[str] = field(default_factory=list)
    dropped_schemas: list[str] = field(default_factory=list)
    sets_search_path: bool = False
    extensions: list[str] = field(default_factory=list)

    def lock(self, mode: str, name: Name | None, *, new: bool = False, index: bool = False,
             change: bool = True) -> None:
        if name is None:
            self.known = False
            return
        self.locks.append(Lock(mode, name, new=new, index=index))
        if change:
            self.changes.append(name)

    def referencing(self, tokens: Sequence[Token]) -> None:
        for name in references(tokens):
            self.references.append(name)
            self.locks.append(Lock(SHARE_ROW_EXCLUSIVE, name))

    def freeze(self) -> Analysis:
        return Analysis(verb=self.verb, known=self.known, locks=tuple(self.locks),
                        changes=tuple(self.changes), references=tuple(self.references),
                        schemas=tuple(self.schemas), dropped_schemas=tuple(self.dropped_schemas),
                        sets_search_path=self.sets_search_path,
                        extensions=tuple(self.extensions))


_OBJECT_KINDS = (
    ("materialized", "view"), ("foreign", "table"), ("table",), ("index",), ("view",),
    ("sequence",), ("type",), ("domain",), ("function",), ("procedure",), ("trigger",),
    ("schema",), ("extension",), ("aggregate",), ("collation",), ("policy",), ("rule",),
    ("statistics",), ("operator",))


def _object_kind(cursor: Cursor) -> str | None:
    for words in _OBJECT_KINDS:
        if cursor.accept(*words):
            return " ".join(words)
    return None


def _analyze(tokens: list[Token]) -> Analysis:
    cursor = Cursor(tokens)
    first = tokens[0].text
    if cursor.accept("create"):
        return _create(cursor, tokens)
    if cursor.accept("alter"):
        return _alter(cursor)
    if cursor.accept("drop"):
        return _drop(cursor)
    if first in ("insert", "update", "delete", "truncate", "lock", "comment", "grant", "revoke",
                 "set", "refresh"):
        return _other(first, cursor)
    if first in ("begin", "commit", "rollback", "select", "reset", "start", "end", "analyze",
                 "vacuum", "notify", "savepoint", "release", "show"):
        return Analysis(verb=first.upper(), known=True)
    return Analysis(verb=first.upper(), known=False)


def _create(cursor: Cursor, tokens: list[Token]) -> Analysis:
    cursor.accept("or", "replace")
    unique = cursor.accept("unique")
    for modifier in ("global", "local", "temporary", "temp", "unlogged", "recursive",
                     "constraint", "trusted", "procedural"):
        cursor.accept(modifier)
    kind = _object_kind(cursor)
    found = _Found(verb=f"CREATE {'UNIQUE ' if unique else ''}{(kind or '?').upper()}")
    if kind is None:
        found.known = False
        return found.freeze()
    concurrently = cursor.accept("concurrently")
    cursor.accept("if", "not", "exists")
    if kind == "index":
        if concurrently:
            found.verb += " CONCURRENTLY"
        while (token := cursor.peek()) is not None and not token.is_("on"):
            cursor.i += 1  # the index name, if any
        cursor.accept("on")
        cursor.accept("only")
        table = cursor.name()
        found.lock(SHARE_UPDATE_EXCLUSIVE if concurrently else SHARE, table)
    elif kind in ("table", "foreign table"):
        table = cursor.name()
        found.lock(ACCESS_EXCLUSIVE, table, new=True)
        rest = tokens[cursor.i:]
        for i, token in enumerate(rest):
            if token.is_("partition") and i + 1 < len(rest) and rest[i + 1].is_("of"):
                found.lock(ACCESS_EXCLUSIVE, Cursor(rest[i + 2:]).name())
        found.referencing(rest)
    elif kind == "trigger":
        rest = tokens[cursor.i:]
        on = next((i for i, t in enumerate(rest) if t.is_("on")), None)
        found.lock(SHARE_ROW_EXCLUSIVE, Cursor(rest[on + 1:]).name() if on is not None else None)
    elif kind == "schema":
        cursor.accept("authorization")  # CREATE SCHEMA AUTHORIZATION role: named after it
        schema = cursor.name()
        if schema is not None:
            found.schemas.append(schema.name)
    elif kind == "extension":
        extension = cursor.name()
        if extension is not None:
            found.extensions.append(extension.name)
        cursor.accept("with")
        if cursor.accept("schema") and (schema := cursor.name()) is not None:
            found.schemas.append(schema.name)
    else:
        name = cursor.name()
        if name is not None:
            found.changes.append(name)
    return found.freeze()


def _alter(cursor: Cursor) -> Analysis:
    kind = _object_kind(cursor)
    found = _Found(verb=f"ALTER {(kind or '?').upper()}")
    if kind is None:
        found.known = False
        return found.freeze()
    cursor.accept("if", "exists")
    cursor.accept("only")
    if kind == "schema":
        schema = cursor.name()
        if schema is not None:
            found.schemas.append(schema.name)
        return found.freeze()
    name = cursor.name()
    if is_punct(cursor.peek(), "*"):  # ALTER TABLE name * (descendants too)
        cursor.i += 1
    actions = list(top_level_parts(cursor.tokens[cursor.i:]))
    if kind in ("table", "foreign table"):
        mode = max((_alter_table_action(action, found) for action in actions),
                   key=MODES.index, default=ACCESS_EXCLUSIVE)
        found.lock(mode, name)
    elif kind == "index":
        renames = bool(actions) and actions[0][:1] and actions[0][0].is_("rename")
        found.lock(SHARE_UPDATE_EXCLUSIVE if renames else ACCESS_EXCLUSIVE, name, index=True)
    elif kind in ("view", "materialized view", "sequence"):
        found.lock(ACCESS_EXCLUSIVE, name)
    elif name is not None:
        found.changes.append(name)
    for action in actions:
        moved = Cursor(action)
        if moved.accept("set", "schema") and (schema := moved.name()) is not None:
            found.schemas.append(schema.name)
    return found.freeze()


def _alter_table_action(action: list[Token], found: _Found) -> str:
    cursor = Cursor(action)
    words = [t.text for t in action if t.kind == "word"]
    if cursor.accept("add"):
        found.referencing(action)
        following = cursor.peek()
        is_column = cursor.accept("column") or following is None or not following.is_(
            "constraint", "foreign", "check", "unique", "primary", "exclude")
        if not is_column and "foreign" in words:
            return SHARE_ROW_EXCLUSIVE
        return ACCESS_EXCLUSIVE
    if cursor.accept("validate", "constraint"):
        return SHARE_UPDATE_EXCLUSIVE
    if cursor.accept("cluster", "on") or cursor.accept("set", "without", "cluster"):
        return SHARE_UPDATE_EXCLUSIVE
    if cursor.accept("set", "(") or cursor.accept("reset", "("):
        return SHARE_UPDATE_EXCLUSIVE
    if cursor.accept("attach", "partition"):
        return SHARE_UPDATE_EXCLUSIVE
    if cursor.accept("detach", "partition"):
        return SHARE_UPDATE_EXCLUSIVE if "concurrently" in words else ACCESS_EXCLUSIVE
    if (cursor.accept("enable") or cursor.accept("disable")) and "trigger" in words:
        return SHARE_ROW_EXCLUSIVE
    if (cursor.accept("alter") and "set" in words
            and any(w in ("statistics", "n_distinct", "n_distinct_inherited") for w in words)):
        return SHARE_UPDATE_EXCLUSIVE
    return ACCESS_EXCLUSIVE


def _drop(cursor: Cursor) -> Analysis:
    kind = _object_kind(cursor)
    found = _Found(verb=f"DROP {(kind or '?').upper()}")
    if kind is None:
        found.known = False
        return found.freeze()
    concurrently = cursor.accept("concurrently")
    cursor.accept("if", "exists")
    if concurrently:
        found.verb += " CONCURRENTLY"
    if kind == "trigger":
        cursor.name()
        if cursor.accept("on"):
            found.lock(ACCESS_EXCLUSIVE, cursor.name())
        return found.freeze()
    if kind == "policy" or kind == "rule":
        cursor.name()
        if cursor.accept("on"):
            found.lock(ACCESS_EXCLUSIVE, cursor.name())
        return found.freeze()
    names = cursor.names()
    if kind == "schema":
        found.dropped_schemas.extend(n.name for n in names)
        return found.freeze()
    for name in names:
        if kind in ("table", "foreign table", "view", "materialized view", "sequence"):
            found.lock(ACCESS_EXCLUSIVE, name)
        elif kind == "index":
            found.lock(SHARE_UPDATE_EXCLUSIVE if concurrently else ACCESS_EXCLUSIVE, name,
                       index=True)
        else:
            found.changes.append(name)
    if not names:
        found.known = False
    return found.freeze()


def _other(first: str, cursor: Cursor) -> Analysis:
    cursor.i += 1
    found = _Found(verb=first.upper())
    name: Name | None
    if first == "insert":
        cursor.accept("into")
        found.lock(ROW_EXCLUSIVE, cursor.name())
    elif first == "update":
        cursor.accept("only")
        found.lock(ROW_EXCLUSIVE, cursor.name())
    elif first == "delete":
        cursor.accept("from")
        cursor.accept("only")
        found.lock(ROW_EXCLUSIVE, cursor.name())
    elif first == "truncate":
        cursor.accept("table")
        cursor.accept("only")
        truncated: list[Name | None] = [*cursor.names()] or [None]
        for name in truncated:
            found.lock(ACCESS_EXCLUSIVE, name)
    elif first == "lock":
        cursor.accept("table")
        cursor.accept("only")
        locked: list[Name | None] = [*cursor.names()] or [None]
        mode = ACCESS_EXCLUSIVE
        if cursor.accept("in"):
            words = []
            while (token := cursor.peek()) is not None and not token.is_("mode"):
                words.append(token.text.upper())
                cursor.i += 1
            mode = " ".join(words) if " ".join(words) in MODES else ACCESS_EXCLUSIVE
        for name in locked:
            found.lock(mode, name)
    elif first == "refresh":
        cursor.accept("materialized", "view")
        concurrently = cursor.accept("concurrently")
        found.lock(EXCLUSIVE if concurrently else ACCESS_EXCLUSIVE, cursor.name())
    elif first == "comment":
        cursor.accept("on")
        kind = _object_kind(cursor) or ("column" if cursor.accept("column") else None)
        name = cursor.name()
        if kind == "column" and name is not None:
            # schema.table.column or table.column: the name read is (table-ish, column)
            parts = _qualified_parts(cursor, name)
            name = Name(parts[-3] if len(parts) > 2 else None, parts[-2]) if len(parts) > 1 \
                else None
        if kind == "schema" and name is not None:
            found.schemas.append(name.name)
        elif kind in ("table", "column", "index") and name is not None:
            found.lock(SHARE_UPDATE_EXCLUSIVE, name, index=kind == "index")
        elif name is not None:
            found.changes.append(name)
    elif first in ("grant", "revoke"):
        tokens = cursor.tokens[cursor.i:]
        on = next((i for i, t in enumerate(tokens) if t.is_("on")), None)
        if on is not None:
            target = Cursor(tokens[on + 1:])
            if target.accept("schema") or any(
                    target.accept("all", kind, "in", "schema")
                    for kind in ("tables", "sequences", "functions", "routines")):
                found.schemas.extend(n.name for n in target.names())
            else:
                _object_kind(target)
                found.changes.extend(target.names())
    elif first == "set":
        _ = cursor.accept("session") or cursor.accept("local")
        found.sets_search_path = cursor.accept("search_path")
    return found.freeze()


def _qualified_parts(cursor: Cursor, name: Name) -> list[str]:
    """The dotted name just read by `cursor.name()`, all of its parts (for COMMENT ON COLUMN)."""
    end = cursor.i
    parts: list[str] = []
    i = end - 1
    while i >= 0:
        token = cursor.tokens[i]
        if token.kind in ("word", "quoted"):
            parts.insert(0, token.text)
            if i > 0 and is_punct(cursor.tokens[i - 1], "."):
                i -= 2
                continue
        break
    return parts or [name.name]
