"""One revision file, read without importing it, and its normalised checksum.

Revision ids, parents, branch labels and dependencies are read with regular expressions (the
syntax tree when the layout is unusual), not by importing the file: a run with nothing
pending must import no revision module (and neither alembic nor SQLAlchemy).

Every file is opened non-blocking and checked to be a regular file on the open descriptor:
a FIFO named `*.py` never hangs a run, a symlink loop or an unreadable file is a `TreeError`
naming the path.
"""

from __future__ import annotations

import ast
import io
import os
import re
import stat
import tokenize
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from migrator.errors import TreeError

REVISION_ID_PATTERN = re.compile(r"^[A-Za-z0-9_]{1,32}\Z")  # Alembic refuses - + @ :
REVISION_NAMES = ("revision", "down_revision", "branch_labels", "depends_on")

# Read from bytes: decoding a thousand files costs more than the search itself.
_REVISION_LINE = re.compile(
    rb"^revision\s*(?::[^=\n]+)?=\s*(?P<q>['\"])(?P<id>[^'\"\n]*)(?P=q)\s*(?:#.*)?$", re.M
)
_VALUE_LINES = {
    name: re.compile(
        rb"^" + name.encode() + rb"\s*(?::[^=\n]+)?=\s*(?P<value>[^#\n]+?)\s*(?:#.*)?$", re.M)
    for name in ("down_revision", "branch_labels", "depends_on")
}
_SIMPLE_VALUE = re.compile(rb"^(?:None|'([^'\\]*)'|\"([^\"\\]*)\")$")
_DOCSTRING_FIRST_LINE = re.compile(
    rb'^\s*(?:"""|\'\'\')\s*(?P<line>[^\n]*?)\s*(?:"""|\'\'\')?\s*$', re.M)
_NOT_LITERAL = object()


def printable(text: str) -> str:
    """`text` with control and other unprintable characters escaped: a directory named with
    a newline must not break a one-line message."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def shown(value: Any, *, limit: int = 80, quote: bool = True) -> str:
    """`value` for an error message: repr'd, and cut short (a hostile file may hold megabytes)."""
    text = repr(value) if quote else str(value)
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"


def read_regular_file(path: str, *, plugin: str, what: str) -> bytes:
    """The bytes of `path`, which must be a regular file (after symlinks). Opened with
    O_NONBLOCK and checked on the descriptor, so a FIFO is never waited on and nothing can be
    swapped in between the check and the read; a symlink loop, a dangling link, a directory, a
    device or an unreadable file is a `TreeError` naming the path."""
    return read_with_identity(path, plugin=plugin, what=what)[0]


def read_with_identity(path: str, *, plugin: str, what: str) -> tuple[bytes, os.stat_result]:
    """`read_regular_file`, and the file's status taken on the same descriptor before the
    read: an identity that can only be older than the bytes, never newer (the revision index
    keys on it)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise TreeError(f"{printable(path)}: cannot read {what} ({exc.strerror}); fix or "
                        "remove it", plugin=plugin, path=path) from None
    try:
        status = os.fstat(fd)
        mode = status.st_mode
        if not stat.S_ISREG(mode):
            kind = ("a directory" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode)
                    else "a socket" if stat.S_ISSOCK(mode) else "a device")
            raise TreeError(f"{printable(path)}: the {what} is {kind}, not a regular file; "
                            "remove it or replace it with a file", plugin=plugin, path=path)
        # os.read, not a file object: building one per file is most of reading ten thousand.
        chunks = [os.read(fd, status.st_size + 1)]
        while chunks[-1]:  # to the end, even if the file grew since fstat
            chunks.append(os.read(fd, 1 << 16))
        return b"".join(chunks), status
    except OSError as exc:
        raise TreeError(f"{printable(path)}: cannot read {what} ({exc.strerror}); fix or "
                        "remove it", plugin=plugin, path=path) from None
    finally:
        os.close(fd)


def require_regular_file(path: str, *, plugin: str, what: str) -> None:
    """Refuse anything but a readable regular file (see `read_regular_file`)."""
    read_regular_file(path, plugin=plugin, what=what)


def source_text(data: bytes, path: str, *, plugin: str) -> str:
    """`data` decoded as Python source: UTF-8, or the encoding its coding cookie declares."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
        if encoding not in ("utf-8", "utf-8-sig"):
            return data.decode(encoding)
    except (SyntaxError, LookupError, UnicodeDecodeError):
        pass
    raise TreeError(f"{printable(path)}: not UTF-8 text; save the revision file as UTF-8",
                    plugin=plugin, path=path)


def sha256_hex(data: bytes) -> str:
    """Lowercase hex sha256 of `data`. hashlib is imported here, not with the module: a pod
    start over an indexed tree hashes nothing, and the import is a percent of it."""
    import hashlib

    return hashlib.sha256(data).hexdigest()


def normalised_checksum(data: bytes) -> str:
    """Lowercase hex sha256 of the code in `data`, Python source: its token stream without
    comments, blank lines, indentation width, trailing whitespace or the file's encoding, so
    those edits do not count, while any change to names, operators, literals or structure
    does. String literals, docstrings included, are code here: a changed docstring is a
    changed revision (accept it with `migrator repair`). Token type names (stable across
    Python versions) are hashed, and an f-string is hashed as its source text, as Python 3.11
    tokenizes it. A file Python cannot tokenize is hashed byte for byte."""
    import hashlib

    digest = hashlib.sha256()
    try:
        for kind, text in _code_tokens(data):
            digest.update(kind.encode())
            digest.update(b"\x00")
            digest.update(text.encode("utf-8", "surrogatepass"))
            digest.update(b"\x01")
    except (tokenize.TokenError, SyntaxError, UnicodeDecodeError):
        return sha256_hex(data)
    return digest.hexdigest()


_DROPPED = frozenset({tokenize.COMMENT, tokenize.NL, tokenize.ENCODING})
_STRUCTURE = frozenset({tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER})
_FSTRING_START = getattr(tokenize, "FSTRING_START", None)  # Python 3.12+
_FSTRING_END = getattr(tokenize, "FSTRING_END", None)


def _code_tokens(data: bytes) -> list[tuple[str, str]]:
    tokens = list(tokenize.tokenize(io.BytesIO(data).readline))
    lines: list[str] = []
    found: list[tuple[str, str]] = []
    depth = 0
    start: tuple[int, int] = (0, 0)
    for token in tokens:
        if _FSTRING_START is not None and token.type == _FSTRING_START:
            if depth == 0:
                start = token.start
                lines = lines or _physical_lines(tokens)
            depth += 1
            continue
        if depth:
            if token.type == _FSTRING_END:
                depth -= 1
                if depth == 0:
                    found.append(("STRING", _slice(lines, start, token.end)))
            continue
        if token.type in _DROPPED:
            continue
        text = "" if token.type in _STRUCTURE else token.string
        found.append((tokenize.tok_name[token.type], text))
    return found


def _physical_lines(tokens: list[tokenize.TokenInfo]) -> list[str]:
    lines: dict[int, str] = {}
    for token in tokens:
        for offset, line in enumerate(token.line.splitlines(keepends=True)):
            lines.setdefault(token.start[0] + offset, line)
    return [lines.get(number, "") for number in range(max(lines, default=0) + 1)]


def _slice(lines: list[str], start: tuple[int, int], end: tuple[int, int]) -> str:
    if start[0] == end[0]:
        return lines[start[0]][start[1]:end[1]]
    middle = "".join(lines[start[0] + 1:end[0]])
    return lines[start[0]][start[1]:] + middle + lines[end[0]][:end[1]]


# sha256 of a revision file's bytes -> its normalised checksum, as the revision index recorded
# them (revision_index.py): content-addressed, so an entry can only ever describe those bytes.
_INDEXED_CHECKSUMS: dict[str, str] = {}


def remember_checksum(sha256: str, checksum: str) -> None:
    _INDEXED_CHECKSUMS[sha256] = checksum


@dataclass(frozen=True, slots=True)
class RevisionFile:
    """One revision file of a tree: its id, parents (several for a merge), Alembic branch
    labels and cross-branch dependencies, path and message."""

    revision: str
    down_revisions: tuple[str, ...]
    file: str  # a string, not a Path: building a thousand Paths costs more than reading them
    message: str
    branch_labels: tuple[str, ...] = ()
    depends_on: tuple[str, ...] = ()
    plugin: str = ""  # for error messages

    @property
    def path(self) -> Path:
        return Path(self.file)

    @property
    def filename(self) -> str:
        return os.path.basename(self.file)

    @property
    def is_merge(self) -> bool:
        return len(self.down_revisions) > 1

    @property
    def checksum(self) -> str:
        """The normalised checksum of the file as it is now (`normalised_checksum`): what
        `migrator.history` records and `check` compares. Read on each access, never at
        discovery: a no-op run reads no revision file beyond its ids."""
        return normalised_checksum(self.read_bytes())

    @property
    def checksum_to_record(self) -> str:
        """`checksum`, for a history row: the same value, taken from the revision index when
        it describes these very bytes (sha256), so applying a revision does not tokenize it.
        `check` and `repair` use `checksum`, computed afresh: an index can never hide an
        edit from them."""
        data = self.read_bytes()
        known = _INDEXED_CHECKSUMS.get(sha256_hex(data))
        return known if known is not None else normalised_checksum(data)

    @property
    def raw_checksum(self) -> str:
        """sha256 of the file's bytes: what migrator recorded before checksums were
        normalised (history rows written by earlier versions)."""
        return sha256_hex(self.read_bytes())

    def checksum_matches(self, recorded: str) -> bool:
        """Whether `recorded` (a history row's checksum) is this file's code: the normalised
        checksum, or the raw-bytes one earlier versions recorded for an unchanged file."""
        data = self.read_bytes()
        return recorded in (normalised_checksum(data), sha256_hex(data))

    def read_bytes(self) -> bytes:
        return read_regular_file(self.file, plugin=self.plugin, what="revision file")

    @classmethod
    def read(cls, file: str, *, plugin: str) -> RevisionFile:
        """Read and validate the revision file at `file` without importing it."""
        return cls.parse(read_regular_file(file, plugin=plugin, what="revision file"), file,
                         plugin=plugin)

    @classmethod
    def parse(cls, data: bytes, file: str, *, plugin: str) -> RevisionFile:
        """Validate `data`, the bytes of the revision file at `file`, into a RevisionFile."""
        source_text(data, file, plugin=plugin)  # refuses non-UTF-8 files (a cookie is honoured)
        values: dict[str, Any] = {}
        revision_match = _REVISION_LINE.search(data)
        if revision_match is not None:
            values["revision"] = revision_match.group("id").decode("utf-8", "replace")
            for name, pattern in _VALUE_LINES.items():
                match = pattern.search(data)
                values[name] = _value(match.group("value")) if match else None
        if revision_match is None or _VALUE_LINES["down_revision"].search(data) is None or any(
                value is _NOT_LITERAL for value in values.values()):
            # Unusual layout (a tuple over several lines, ...): read the syntax tree.
            values = _assignments_from_ast(source_text(data, file, plugin=plugin), file, plugin)
        revision = values["revision"]
        if not isinstance(revision, str) or not REVISION_ID_PATTERN.match(revision):
            raise TreeError(
                f"{printable(file)}: revision id {shown(revision)} must be 1-32 letters, "
                "digits or '_'; fix the `revision = ...` line",
                plugin=plugin, path=file)
        docstring = _DOCSTRING_FIRST_LINE.search(data, 0, 500)
        message = docstring.group("line").decode("utf-8", "replace") if docstring else ""
        return cls(
            revision=revision,
            down_revisions=_as_revision_tuple(values["down_revision"], file, plugin),
            file=file, message=message,
            branch_labels=_as_names(values.get("branch_labels"), "branch_labels", file, plugin),
            depends_on=_as_names(values.get("depends_on"), "depends_on", file, plugin),
            plugin=plugin)


def _value(raw: bytes) -> Any:
    """An assigned value: None and plain strings directly, anything else via literal_eval."""
    simple = _SIMPLE_VALUE.match(raw)
    if simple is not None:
        text = simple.group(1) if simple.group(1) is not None else simple.group(2)
        return None if text is None else text.decode("utf-8", "replace")
    try:
        return ast.literal_eval(raw.decode("utf-8", "replace"))
    except (ValueError, TypeError, SyntaxError, RecursionError, MemoryError):
        return _NOT_LITERAL  # MemoryError, RecursionError: nested too deeply for the parser


def _assignments_from_ast(text: str, path: str, plugin: str) -> dict[str, Any]:
    """Fallback for unusual formatting: the assignments in the module's syntax tree."""
    where = printable(path)
    try:
        module = ast.parse(text, filename=path)
    except SyntaxError as exc:
        raise TreeError(
            f"{where}:{exc.lineno}: syntax error in revision file ({exc.msg}); fix the file",
            plugin=plugin, path=path) from None
    except (RecursionError, MemoryError):
        raise TreeError(f"{where}: the revision file is nested too deeply to parse; fix the "
                        "file", plugin=plugin, path=path) from None
    found: dict[str, Any] = {}
    for node in module.body:
        targets: list[ast.expr] = []
        value: ast.expr | None = None
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        for target in targets:
            if isinstance(target, ast.Name) and target.id in REVISION_NAMES:
                try:
                    found[target.id] = ast.literal_eval(value) if value is not None else None
                except (ValueError, TypeError, RecursionError, MemoryError):
                    found[target.id] = _NOT_LITERAL
    for name in ("revision", "down_revision"):
        if name not in found:
            raise TreeError(
                f"{where}: no `{name} = ...` assignment; every revision file needs "
                "`revision` and `down_revision` (None for the first revision)",
                plugin=plugin, path=path)
    for name in REVISION_NAMES:
        if found.get(name) is _NOT_LITERAL:
            raise TreeError(f"{where}: `{name}` must be a literal string (or None / a tuple of "
                            "strings), not an expression", plugin=plugin, path=path)
    return found


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
        f"{printable(path)}: down_revision {shown(value)} must be None, a revision id or a "
        "tuple of ids", plugin=plugin, path=path)


def _as_names(value: Any, name: str, path: str, plugin: str) -> tuple[str, ...]:
    """`branch_labels` / `depends_on`: None, a string, or a tuple/list of strings."""
    if value is None:
        return ()
    if isinstance(value, str):
        value = (value,)
    if isinstance(value, tuple | list) and all(
            isinstance(v, str) and v and "\n" not in v for v in value):
        return tuple(value)
    raise TreeError(f"{printable(path)}: {name} {shown(value)} must be None, a string or a "
                    "tuple of strings", plugin=plugin, path=path)
