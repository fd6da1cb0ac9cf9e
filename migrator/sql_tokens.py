"""The small SQL tokenizer under `migrator.sql_scan`: strings, quoted identifiers, comments and
dollar quotes are understood, so a keyword inside a literal never matches."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Name:
    """A possibly schema-qualified object name, as written (unquoted names folded to lower)."""

    schema: str | None
    name: str

    def __str__(self) -> str:
        return f"{self.schema}.{self.name}" if self.schema else self.name

_TOKEN = re.compile(
    r"""(?P<space>\s+)
      | (?P<comment>--[^\n]*|/\*.*?\*/)
      | (?P<string>[EeBbXxNnUu]&?'(?:[^'\\]|\\.|'')*'|'(?:[^']|'')*')
      | (?P<dollar>\$\$.*?\$\$|\$(?P<tag>[A-Za-z_]\w*)\$.*?\$(?P=tag)\$)
      | (?P<quoted>"(?:[^"]|"")*")
      | (?P<word>[A-Za-z_][\w$]*)
      | (?P<number>\d+(?:\.\d+)?)
      | (?P<punct>.)""", re.S | re.X)


@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # word | quoted | punct | literal
    text: str  # words folded to lower case, quoted identifiers unquoted

    def is_(self, *words: str) -> bool:
        return self.kind == "word" and self.text in words


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    for match in _TOKEN.finditer(text):
        kind = match.lastgroup
        value = match.group()
        if kind in ("space", "comment"):
            continue
        if kind == "word":
            tokens.append(Token("word", value.lower()))
        elif kind == "quoted":
            tokens.append(Token("quoted", value[1:-1].replace('""', '"')))
        elif kind == "punct":
            tokens.append(Token("punct", value))
        else:
            tokens.append(Token("literal", value))
    return tokens


def split(text: str) -> list[list[Token]]:
    """The statements in `text` (split at top-level semicolons), as tokens."""
    statements: list[list[Token]] = [[]]
    for token in tokenize(text):
        if token.kind == "punct" and token.text == ";":
            statements.append([])
        else:
            statements[-1].append(token)
    return [s for s in statements if s]


def is_punct(token: Token | None, char: str) -> bool:
    return token is not None and token.kind == "punct" and token.text == char


class Cursor:
    def __init__(self, tokens: Sequence[Token]) -> None:
        self.tokens, self.i = tokens, 0

    def peek(self, offset: int = 0) -> Token | None:
        at = self.i + offset
        return self.tokens[at] if at < len(self.tokens) else None

    def accept(self, *words: str) -> bool:
        """Consume the words in sequence if they are next; all or nothing."""
        for offset, word in enumerate(words):
            token = self.peek(offset)
            if token is None or not token.is_(word):
                return False
        self.i += len(words)
        return True

    def name(self) -> Name | None:
        parts: list[str] = []
        while (token := self.peek()) is not None and token.kind in ("word", "quoted"):
            parts.append(token.text)
            self.i += 1
            if not is_punct(self.peek(), "."):
                break
            self.i += 1
        if not parts:
            return None
        return Name(parts[-2], parts[-1]) if len(parts) > 1 else Name(None, parts[0])

    def names(self) -> list[Name]:
        found: list[Name] = []
        while (name := self.name()) is not None:
            found.append(name)
            if not is_punct(self.peek(), ","):
                break
            self.i += 1
        return found


def references(tokens: Sequence[Token]) -> list[Name]:
    found = []
    for i, token in enumerate(tokens):
        if token.is_("references"):
            name = Cursor(tokens[i + 1:]).name()
            if name is not None:
                found.append(name)
    return found


def top_level_parts(tokens: Sequence[Token]) -> Iterator[list[Token]]:
    """`tokens` split at commas outside parentheses (ALTER TABLE's list of actions)."""
    depth, part = 0, list[Token]()
    for token in tokens:
        if token.kind == "punct" and token.text in "([":
            depth += 1
        elif token.kind == "punct" and token.text in ")]":
            depth -= 1
        if depth == 0 and token.kind == "punct" and token.text == ",":
            yield part
            part = []
        else:
            part.append(token)
    if part:
        yield part
