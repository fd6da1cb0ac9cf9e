"""The revision index: what discovery reads from each revision file, kept beside the trees.

Reading and parsing the ids of 10,000 revision files is most of a no-op run over 1,000 plugins.
One index describes the revision files below its directory: `<migrations-dir>/
.migrator-index.json` for the trees there, `<package>/.migrator-index.json` for a tree an
entry point names (in site-packages). One file, not one per tree: a thousand small files cost
more to read, and far more to write. An entry per revision file, by its path from the index,
a list (`FIELDS` names its items: lists load twice as fast as objects):

    {"format": "migrator-index/2",
     "files": {"core/versions/0001_create_accounts.py": [
               875, 4212, 1733450000123456789, 1733450000123456789,
               "<sha256>", "<checksum>" or null, "0001", [], [], [], "create accounts"]},
     "tree": {…}}

`tree`, in the migrations directory's index only, is the tree summary
(`migrator.tree_summary`): what discovery derived from the directories and `plugin.toml`s.

Trust, in this order; an index can make migrator skip work, never see a file as other than
it is:
- An entry is used without opening its file only when the file's size, inode, mtime_ns and
  ctime_ns (`os.stat`, through symlinks) all equal the entry's. The path part of the key is
  relative to the index's directory. ctime because no one can set it: an in-place rewrite of
  the same size whose mtime is put back (`os.utime`, `touch -d`, `rsync --inplace -t`) still
  changes it.
- Otherwise the file is read, and when its sha256 is the entry's, the entry's fields are used
  (the parse is skipped, the read is not). This is what makes an index built into an image
  useful on every node: extracting a layer gives files new inodes, and Docker layers keep
  mtimes to the second only.
- An entry for a file changed less than `RACY_NS` before the run began (by our clock or, when
  its clock lags, the file system's: a new file's mtime) gets `mtime_ns` null, so it is never
  trusted on identity alone: an edit in the same clock tick as the one before, after it was
  read, would leave size, mtime and ctime as recorded (git's "racily clean" entries; 2 s also
  covers coarse clocks, FAT's 2 s). A later rewrite records it once it is older.
- `checksum` (the normalised checksum a history row records; written by `migrator index`
  only, since tokenizing every file costs more than parsing its ids) is used for exactly the bytes
  whose sha256 the entry holds, when a revision is stamped (`RevisionFile.checksum_to_record`)
  and never by `check` or `repair`, which compute it afresh.
- A missing, unreadable, oversized, corrupt or other-format index, or an entry of the wrong
  shape, counts as no entry: never an error.

Writing: `migrator index` writes every tree's index and fails naming the path when it cannot.
Any other command that reads the trees rewrites an index only when it had to parse a file it
did not describe (new, changed, no index), atomically (a temporary file beside it,
then rename), and ignores any failure: a read-only root filesystem, a package directory it may
not write, a full disk. Files whose only change is their identity (an image pulled onto a node)
are re-read on every run but not rewritten: a fresh container would throw the write away.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from migrator.errors import TreeError
from migrator.revisions import (
    REVISION_ID_PATTERN,
    RevisionFile,
    normalised_checksum,
    printable,
    read_with_identity,
    remember_checksum,
    sha256_hex,
)

INDEX_NAME = ".migrator-index.json"
FORMAT = "migrator-index/2"  # /2: the tree summary
MAX_INDEX_BYTES = 64 * 1024 * 1024  # a hostile or runaway file is not loaded whole
RACY_NS = 2_000_000_000
FIELDS = ("size", "inode", "mtime_ns", "ctime_ns", "sha256", "checksum", "revision",
          "down_revisions", "branch_labels", "depends_on", "message")
_SHA256, _CHECKSUM = 4, 5


class Summary(Protocol):
    """What the tree summary writes into the index (`migrator.tree_summary`)."""

    def as_json(self, racy_from: int) -> Any: ...


@dataclass(slots=True)
class RevisionIndex:
    """One index: the entries loaded from disk, and those a rewrite would hold."""

    path: str  # <directory>/.migrator-index.json
    entries: dict[str, Any]
    # What a rewrite would hold: entries as loaded, or what was read (made entries on save).
    current: dict[str, list[Any] | tuple[RevisionFile, os.stat_result, str, str | None]] = (
        field(default_factory=dict))
    parsed: bool = False  # a file had to be parsed: the index on disk is behind
    started_ns: int = field(default_factory=time.time_ns)  # before any file was read
    # Tokenizing every file for its checksum costs more than parsing its ids: only `migrator
    # index` pays it; an index a run rewrites keeps the checksums it had, adds none.
    with_checksums: bool = False
    tree: Any = None  # the tree summary as loaded, unchecked (`migrator.tree_summary`)
    tree_record: Summary | None = None  # the tree summary a rewrite would hold

    @classmethod
    def load(cls, directory: str) -> RevisionIndex:
        """The index in `directory`; an empty one when there is none usable."""
        path = os.path.join(directory, INDEX_NAME)
        document = _load_document(path)
        files = document.get("files")
        return cls(path, files if isinstance(files, dict) else {}, tree=document.get("tree"))

    @classmethod
    def empty(cls, directory: str) -> RevisionIndex:
        """An index trusting nothing on disk: `migrator index` reads every file afresh, and
        records each one's checksum too."""
        return cls(os.path.join(directory, INDEX_NAME), {}, with_checksums=True)

    def revision(self, file: str, name: str, plugin: str) -> RevisionFile:
        """The revision file at `file` (`name`: its path from the index's directory) of
        `plugin`: from the index when it describes the file as it is, else read (and parsed
        unless its bytes are the indexed ones)."""
        base = os.path.basename(file)
        trusted = self.trusted(file[:-len(base)], name[:-len(base)], [base], plugin)
        if trusted is not None:
            return trusted[0]
        entry = self.entries.get(name)
        data, status = read_with_identity(file, plugin=plugin, what="revision file")
        digest = sha256_hex(data)
        known, checksum = None, None
        if type(entry) is list and len(entry) == _LENGTH and entry[_SHA256] == digest:
            known = _revision_from(entry, file, plugin)
            checksum = None if known is None else entry[_CHECKSUM]
        if known is None:
            known = RevisionFile.parse(data, file, plugin=plugin)
            self.parsed = True
        if type(checksum) is not str:
            checksum = normalised_checksum(data) if self.with_checksums else None
        if checksum is not None:
            remember_checksum(digest, checksum)
        self.current[name] = (known, status, digest, checksum)
        return known

    def trusted(self, directory: str, prefix: str, names: list[str], plugin: str
                ) -> list[RevisionFile] | None:
        """The revision files `names` in `directory` (ending with "/"; `prefix`: its path from
        the index's directory) as their entries have them, when every entry describes its
        file by its identity (see the module); None otherwise, with nothing read. Files, not
        a file: one loop for a tree, since the tree summary checks a thousand files a run."""
        entries = self.entries
        found: list[RevisionFile] = []
        for name in names:
            entry = entries.get(prefix + name)
            file = directory + name
            try:
                status = os.stat(file)
            except OSError:
                return None  # the caller reads it, and names the problem
            if (type(entry) is not list or len(entry) != _LENGTH  # FIELDS[:4]: the identity
                    or entry[2] != status.st_mtime_ns or entry[3] != status.st_ctime_ns
                    or entry[0] != status.st_size or entry[1] != status.st_ino
                    or not stat.S_ISREG(status.st_mode)):
                return None
            known = _revision_from(entry, file, plugin)
            if known is None:
                return None
            found.append(known)
        for name in names:
            entry = self.current[prefix + name] = entries[prefix + name]
            if type(entry[_SHA256]) is str and type(entry[_CHECKSUM]) is str:
                remember_checksum(entry[_SHA256], entry[_CHECKSUM])
        return found

    def save_if_behind(self) -> None:
        """Rewrite the index when a file had to be parsed; never fails (see the module)."""
        if self.parsed:
            # A read-only filesystem or directory, a full disk: the next run reads the files.
            with contextlib.suppress(OSError):
                self.save()

    def save(self) -> None:
        """Write the index atomically; OSError when it cannot be written."""
        directory = os.path.dirname(self.path)
        temporary = os.path.join(
            directory, f".migrator-index.{os.getpid()}.{os.urandom(4).hex()}.tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                # The file system's clock too: a network file system stamps by its own.
                racy_from = min(self.started_ns, os.fstat(fd).st_mtime_ns) - RACY_NS
                document: dict[str, Any] = {"format": FORMAT, "files": {
                    name: _entry(value, racy_from)
                    for name, value in sorted(self.current.items())}}
                if self.tree_record is not None:
                    document["tree"] = self.tree_record.as_json(racy_from)
                # dumps, not dump: dump feeds the file from a pure-Python generator, 10x slower.
                handle.write(json.dumps(document, separators=(",", ":")))
            os.replace(temporary, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise

    def save_or_refuse(self) -> None:
        """`save`, failing with a `TreeError` naming the path (for `migrator index`)."""
        try:
            self.save()
        except OSError as exc:
            raise TreeError(f"{printable(self.path)}: cannot write the revision index "
                            f"({exc.strerror}); make its directory writable when running "
                            "migrator index", path=self.path) from None


def _load_document(path: str) -> dict[str, Any]:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return {}
    try:
        status = os.fstat(fd)
        if not stat.S_ISREG(status.st_mode) or status.st_size > MAX_INDEX_BYTES:
            return {}
        with os.fdopen(fd, "rb", closefd=False) as handle:
            document = json.loads(handle.read())
    except (OSError, ValueError, RecursionError):  # ValueError: bad JSON or UTF-8
        return {}
    finally:
        os.close(fd)
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        return {}
    return document


def identity(status: os.stat_result, racy_from: int) -> list[int | None]:
    """A file's or directory's identity as the index records it: size, inode, mtime_ns and
    ctime_ns, the mtime null (never matching) when it changed at or after `racy_from`."""
    racy = max(status.st_mtime_ns, status.st_ctime_ns) >= racy_from
    return [status.st_size, status.st_ino, None if racy else status.st_mtime_ns,
            status.st_ctime_ns]


def _entry(value: list[Any] | tuple[RevisionFile, os.stat_result, str, str | None],
           racy_from: int) -> list[Any]:
    """The entry to write (`FIELDS`), `mtime_ns` null when the file may still change within
    the tick it last changed in (see the module)."""
    if isinstance(value, list):  # trusted on its identity in this run: recorded before
        return value
    revision, status, digest, checksum = value
    return [*identity(status, racy_from), digest, checksum, revision.revision,
            list(revision.down_revisions), list(revision.branch_labels),
            list(revision.depends_on), revision.message]


def _revision_from(entry: list[Any], file: str, plugin: str) -> RevisionFile | None:
    """The entry (a list of `FIELDS`' length) as a RevisionFile, held to what
    `RevisionFile.parse` guarantees; None when it is not (a damaged or foreign index).
    Written for speed: it runs per file per run."""
    _, _, _, _, _, _, revision, parents, labels, depends_on, message = entry
    if (type(revision) is not str or not _is_id(revision) or type(parents) is not list
            or type(message) is not str or (labels != [] and not _names(labels))
            or (depends_on != [] and not _names(depends_on))):
        return None
    for parent in parents:
        if type(parent) is not str or not _is_id(parent):
            return None
    return RevisionFile(revision, tuple(parents), file, message, tuple(labels),
                        tuple(depends_on), plugin)


_is_id = REVISION_ID_PATTERN.match
_LENGTH = len(FIELDS)


def _names(value: Any) -> bool:
    return type(value) is list and (not value or all(
        type(v) is str and v and "\n" not in v for v in value))
