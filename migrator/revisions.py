"""One revision file of a plugin's tree, read without importing it: its id, parents and
message from a regular expression over its bytes (the syntax tree when the layout is unusual).

A run with nothing pending must import no revision module (and neither alembic nor
SQLAlchemy): these few lines are all it reads of each file.
"""

from __future__ import annotations

import ast
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from migrator.errors import TreeError

REVISION_ID_PATTERN = re.compile(r"^[A-Za-z0-9_]{1,32}\Z")  # Alembic refuses - + @ :

# Read from bytes: decoding a thousand files costs more than the search itself.
_REVISION_LINE = re.compile(
    rb"^revision\s*(?::[^=\n]+)?=\s*(?P<q>['\"])(?P<id>[^'\"\n]*)(?P=q)\s*(?:#.*)?$", re.M
)
_DOWN_REVISION_LINE = re.compile(
    rb"^down_revision\s*(?::[^=\n]+)?=\s*(?P<value>[^#\n]+?)\s*(?:#.*)?$", re.M
)
_SIMPLE_VALUE = re.compile(rb"^(?:None|'([^'\\]*)'|\"([^\"\\]*)\")$")
_DOCSTRING_FIRST_LINE = re.compile(
    rb'^\s*(?:"""|\'\'\')\s*(?P<line>[^\n]*?)\s*(?:"""|\'\'\')?\s*$', re.M)


@dataclass(frozen=True, slots=True)
class RevisionFile:
    """One revision file of a tree: its id, parents, path and message."""

    revision: str
    down_revisions: tuple[str, ...]
    file: str  # a string, not a Path: building a thousand Paths costs more than reading them
    message: str

    @property
    def path(self) -> Path:
        return Path(self.file)

    @property
    def filename(self) -> str:
        return os.path.basename(self.file)

    @classmethod
    def read(cls, file: str, *, plugin: str) -> RevisionFile:
        path = file
        try:
            with open(path, "rb") as handle:
                data = handle.read()
        except OSError as exc:
            raise TreeError(f"{path}: cannot read revision file ({exc.strerror}); fix or remove it",
                            plugin=plugin, path=str(path)) from None
        revision_match = _REVISION_LINE.search(data)
        down_match = _DOWN_REVISION_LINE.search(data)
        down: Any = _NOT_LITERAL
        if revision_match is not None and down_match is not None:
            revision: Any = revision_match.group("id").decode("utf-8", "replace")
            down = _value(down_match.group("value"))
        if down is _NOT_LITERAL:
            # Unusual layout (a tuple over several lines, annotations, ...): read the syntax tree.
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                raise TreeError(f"{path}: not UTF-8 text; save the revision file as UTF-8",
                                plugin=plugin, path=str(path)) from None
            revision, down = _assignments_from_ast(text, path, plugin)
        if not isinstance(revision, str) or not REVISION_ID_PATTERN.match(revision):
            raise TreeError(
                f"{path}: revision id {shown_value(revision)} must be 1-32 letters, digits or '_'; "
                "fix the `revision = ...` line",
                plugin=plugin, path=str(path))
        down_revisions = _as_revision_tuple(down, path, plugin)
        docstring = _DOCSTRING_FIRST_LINE.search(data, 0, 500)
        message = docstring.group("line").decode("utf-8", "replace") if docstring else ""
        return cls(revision=revision, down_revisions=down_revisions, file=file,
                   message=message)


def _value(raw: bytes) -> Any:
    """A down_revision value: None and plain strings directly, anything else via literal_eval."""
    simple = _SIMPLE_VALUE.match(raw)
    if simple is not None:
        text = simple.group(1) if simple.group(1) is not None else simple.group(2)
        return None if text is None else text.decode("utf-8", "replace")
    return _literal(raw.decode("utf-8", "replace"))


_NOT_LITERAL = object()


def printable(text: str) -> str:
    """`text` with control and other unprintable characters escaped: a directory named with
    a newline must not break a one-line message."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def shown_value(value: Any, *, limit: int = 80, quote: bool = True) -> str:
    """`value` for an error message: repr'd, and cut short (a hostile file may hold megabytes)."""
    text = repr(value) if quote else str(value)
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"


def _literal(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, TypeError, SyntaxError, RecursionError, MemoryError):
        return _NOT_LITERAL  # MemoryError, RecursionError: nested too deeply for the parser


def _assignments_from_ast(text: str, path: str, plugin: str) -> tuple[Any, Any]:
    """Fallback for unusual formatting: find the two assignments in the module's syntax tree."""
    try:
        module = ast.parse(text, filename=str(path))
    except SyntaxError as exc:
        raise TreeError(
            f"{path}:{exc.lineno}: syntax error in revision file ({exc.msg}); fix the file",
            plugin=plugin, path=str(path)) from None
    except (RecursionError, MemoryError):
        raise TreeError(f"{path}: the revision file is nested too deeply to parse; fix the file",
                        plugin=plugin, path=str(path)) from None
    found: dict[str, Any] = {}
    for node in module.body:
        targets: list[ast.expr] = []
        value: ast.expr | None = None
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        for target in targets:
            if isinstance(target, ast.Name) and target.id in ("revision", "down_revision"):
                try:
                    found[target.id] = ast.literal_eval(value) if value is not None else None
                except (ValueError, TypeError, RecursionError, MemoryError):
                    found[target.id] = _NOT_LITERAL
    for name in ("revision", "down_revision"):
        if name not in found:
            raise TreeError(
                f"{path}: no `{name} = ...` assignment; every revision file needs "
                "`revision` and `down_revision` (None for the first revision)",
                plugin=plugin, path=str(path))
        if found[name] is _NOT_LITERAL:
            raise TreeError(f"{path}: `{name}` must be a literal string (or None / a tuple of "
                            "strings), not an expression", plugin=plugin, path=str(path))
    return found["revision"], found["down_revision"]


def _as_revision_tuple(value: Any, path: str, plugin: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = (value,)
    if isinstance(value, tuple | list) and all(
        isinstance(v, str) and REVISION_ID_PATTERN.match(v) for v in value
    ):
        return tuple(value)
    raise TreeError(
        f"{path}: down_revision {shown_value(value)} must be None, a revision id or a tuple of ids",
        plugin=plugin, path=str(path))
