"""The normalised checksum of a revision file (DESIGN.md `check`): comments, blank lines,
trailing whitespace and indentation width do not change it, code does; and what
`RevisionFile.read` keeps of a file (branch labels, dependencies) without importing it."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from migrator.errors import TreeError
from migrator.revisions import RevisionFile, normalised_checksum

BASE = b'''"""create accounts"""
from alembic import op

revision = "a1"
down_revision = None


def upgrade() -> None:
    op.execute("CREATE TABLE accounts (id int)")
    if True:
        op.execute(f"SELECT {1 + 1}")
'''


def checksum(source: bytes) -> str:
    return normalised_checksum(source)


@pytest.mark.parametrize(("what", "edited"), [
    ("a comment line", BASE.replace(b"def upgrade", b"# explain why\ndef upgrade")),
    ("a trailing comment", BASE.replace(b'(id int)")', b'(id int)")  # noqa: lint opt-out')),
    ("blank lines", BASE.replace(b"\n\ndef", b"\n\n\n\n\ndef") + b"\n\n"),
    ("trailing whitespace", BASE.replace(b"None\n", b"None   \t\n")),
    ("whitespace-only lines", BASE.replace(b"\n\ndef", b"\n    \n\ndef")),
    ("indentation width", BASE.replace(b"\n    ", b"\n  ")),
    ("spaces between tokens", BASE.replace(b"revision = ", b"revision   =   ")),
    ("CRLF line ends", BASE.replace(b"\n", b"\r\n")),
    ("a UTF-8 BOM", b"\xef\xbb\xbf" + BASE),
    ("no final newline", BASE.rstrip(b"\n")),
])
def test_layout_and_comments_do_not_count(what: str, edited: bytes) -> None:
    """Edits that leave the code as it was leave the checksum as it was."""
    assert edited != BASE
    assert checksum(edited) == checksum(BASE), what


@pytest.mark.parametrize(("what", "edited"), [
    ("a changed statement", BASE.replace(b"(id int)", b"(id bigint)")),
    ("a changed name", BASE.replace(b"def upgrade", b"def upgrade_")),
    ("an added statement", BASE + b"    op.execute('SELECT 2')\n"),
    ("a changed f-string", BASE.replace(b"{1 + 1}", b"{1 + 2}")),
    ("a changed docstring", BASE.replace(b"create accounts", b"create users")),
    ("a changed nesting", BASE.replace(b"\n        op.execute(f", b"\n    op.execute(f")),
    ("a changed revision id", BASE.replace(b'"a1"', b'"a2"')),
])
def test_code_changes_count(what: str, edited: bytes) -> None:
    """Any change to the code itself (docstrings included, by choice) changes the checksum."""
    assert checksum(edited) != checksum(BASE), what


def test_checksum_is_lowercase_sha256_hex_and_stable() -> None:
    value = checksum(BASE)
    assert len(value) == 64 and value == value.lower()
    int(value, 16)
    assert checksum(BASE) == value


def test_a_file_python_cannot_tokenize_is_hashed_byte_for_byte() -> None:
    """An unterminated string cannot be tokenized: the raw sha256 is the fallback."""
    broken = b'x = """never closed\n'
    assert checksum(broken) == hashlib.sha256(broken).hexdigest()


def test_revision_file_checksum_and_legacy_raw_checksum(tmp_path: Path) -> None:
    """`RevisionFile.checksum` is the normalised one; `checksum_matches` also accepts the
    raw-bytes sha256 that earlier versions recorded, for an unchanged file only."""
    (tmp_path / "core" / "versions").mkdir(parents=True)
    path = tmp_path / "core" / "versions" / "0001_a1.py"
    path.write_bytes(BASE)
    rev = RevisionFile.read(str(path), plugin="core")
    assert rev.checksum == checksum(BASE)
    raw = hashlib.sha256(BASE).hexdigest()
    assert rev.raw_checksum == raw
    assert rev.checksum_matches(raw) and rev.checksum_matches(rev.checksum)
    path.write_bytes(BASE + b"# a comment\n")
    assert rev.checksum_matches(checksum(BASE))  # the code is unchanged
    assert not rev.checksum_matches(raw)  # the bytes are not: the legacy checksum differs
    path.write_bytes(BASE + b"x = 1\n")
    assert not rev.checksum_matches(checksum(BASE))


def test_branch_labels_and_depends_on_are_read_without_importing(tmp_path: Path) -> None:
    """Alembic's `branch_labels` and `depends_on` are kept on the RevisionFile, in one-line,
    annotated and multi-line forms; the module (which raises on import) is never run."""
    path = tmp_path / "0002_b2.py"
    path.write_text('raise RuntimeError("never imported")\n'
                    'revision = "b2"\n'
                    'down_revision: str | None = ("a1", "x1")\n'
                    "branch_labels: tuple[str, ...] | None = ('reports',)\n"
                    'depends_on = "c3"\n')
    rev = RevisionFile.read(str(path), plugin="core")
    assert (rev.revision, rev.down_revisions, rev.branch_labels, rev.depends_on) == (
        "b2", ("a1", "x1"), ("reports",), ("c3",))
    assert rev.is_merge
    path.write_text('revision = "b2"\ndown_revision = "a1"\n'
                    'branch_labels = None\ndepends_on = (\n    "c3",\n    "d4",\n)\n')
    rev = RevisionFile.read(str(path), plugin="core")
    assert (rev.branch_labels, rev.depends_on) == ((), ("c3", "d4"))
    path.write_text('revision = "b2"\ndown_revision = "a1"\n')
    assert RevisionFile.read(str(path), plugin="core").depends_on == ()
    path.write_text('revision = "b2"\ndown_revision = "a1"\ndepends_on = [1, 2]\n')
    with pytest.raises(TreeError, match="depends_on"):
        RevisionFile.read(str(path), plugin="core")
    path.write_text('revision = "b2"\ndown_revision = "a1"\nbranch_labels = make_labels()\n')
    with pytest.raises(TreeError, match="`branch_labels` must be a literal"):
        RevisionFile.read(str(path), plugin="core")


def test_non_utf8_revision_file_is_refused_unless_it_declares_its_encoding(
        tmp_path: Path) -> None:
    """Latin-1 bytes without a coding cookie are refused naming the file; with a PEP 263
    cookie (Python and Alembic accept it) the file is read."""
    path = tmp_path / "0001_a1.py"
    path.write_bytes(b'"""caf\xe9"""\nrevision = "a1"\ndown_revision = None\n')
    with pytest.raises(TreeError) as caught:
        RevisionFile.read(str(path), plugin="core")
    assert str(caught.value) == f"{path}: not UTF-8 text; save the revision file as UTF-8"
    path.write_bytes(b'# -*- coding: latin-1 -*-\n"""caf\xe9"""\nrevision = "a1"\n'
                     b"down_revision = None\n")
    assert RevisionFile.read(str(path), plugin="core").revision == "a1"
