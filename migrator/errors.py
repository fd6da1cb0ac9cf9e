"""migrator's exceptions; each class carries the process exit code the CLI uses.

    MigratorError                  exit 1  (base; a migration failed)
    ├── MigrationFailed            exit 1  plugin, revision, database message
    ├── DatabaseError              exit 1  the database refused migrator's own statements
    ├── UsageError                 exit 2
    │   ├── ConfigError                    bad flag value, no database configured
    │   ├── TreeError                      bad plugin tree, plugin.toml or revision file
    │   ├── DependencyError                depends_on cycle or unknown dependency
    │   ├── UnknownPlugin
    │   └── UnknownRevision
    ├── TimedOut                   exit 3
    │   ├── LockWaitTimeout                another runner held a plugin's lock too long
    │   └── WaitTimeout                    `migrator wait` gave up
    ├── DatabaseUnreachable        exit 4
    │   └── ConnectionLost                 the connection dropped mid-run (restart, failover,
    │                                      pg_terminate_backend): rolled back, rerun
    ├── FindingsReported           exit 5  check / status --check / lint found something
    └── Interrupted                exit 6  SIGTERM / SIGINT; the next run resumes

Every message says what went wrong, where, and what to do next, on one line.
"""

from __future__ import annotations

from collections.abc import Sequence


class MigratorError(Exception):
    """Base of every error migrator reports; `exit_code` is the process exit status."""

    exit_code = 1


class MigrationFailed(MigratorError):
    exit_code = 1

    def __init__(self, message: str, *, plugin: str, revision: str | None) -> None:
        super().__init__(message)
        self.plugin = plugin
        self.revision = revision


class UsageError(MigratorError):
    exit_code = 2


class ConfigError(UsageError):
    pass


class TreeError(UsageError):
    def __init__(self, message: str, *, plugin: str | None = None, path: str | None = None,
                 heads: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.plugin = plugin
        self.path = path
        self.heads = tuple(heads)


class DatabaseError(MigratorError):
    """The database refused something outside a revision (permissions, a bad schema, ...)."""

    exit_code = 1


class DependencyError(UsageError):
    def __init__(self, message: str, *, plugins: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.plugins = tuple(plugins)


class UnknownPlugin(UsageError):
    def __init__(self, message: str, *, plugin: str) -> None:
        super().__init__(message)
        self.plugin = plugin


class UnknownRevision(UsageError):
    def __init__(self, message: str, *, plugin: str, revision: str) -> None:
        super().__init__(message)
        self.plugin = plugin
        self.revision = revision


class TimedOut(MigratorError):
    exit_code = 3


class LockWaitTimeout(TimedOut):
    def __init__(self, message: str, *, plugin: str) -> None:
        super().__init__(message)
        self.plugin = plugin


class WaitTimeout(TimedOut):
    pass


class DatabaseUnreachable(MigratorError):
    exit_code = 4


class ConnectionLost(DatabaseUnreachable):
    """A connection migrator was using went away; whatever was in flight rolled back."""


class FindingsReported(MigratorError):
    exit_code = 5


class Interrupted(MigratorError):
    exit_code = 6
