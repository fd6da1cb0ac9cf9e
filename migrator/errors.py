"""migrator's exceptions; each class carries the process exit code the CLI uses.

    MigratorError                  exit 1  (base; a migration failed)
    ├── MigrationFailed            exit 1  plugin, revision, what the revision or database did
    │   └── BackfillError                  a backfill was misused, or a batch failed past its
    │                                      retries (progress kept: rerun resumes)
    ├── DatabaseError              exit 1  the database refused migrator's own statements
    ├── WorkerDied                 exit 1  a --jobs worker process ended without reporting
    │                                      (killed by a signal, e.g. the OOM killer)
    ├── UsageError                 exit 2
    │   ├── ConfigError                    bad flag value, no database configured
    │   ├── TreeError                      bad plugin tree, plugin.toml or revision file
    │   ├── DependencyError                depends_on cycle or unknown dependency
    │   ├── UnknownPlugin
    │   ├── UnknownRevision
    │   ├── DependentsApplied              downgrade of a plugin others depend on (--cascade)
    │   ├── TargetRefused                  what waiting cannot heal: failed authentication,
    │   │                                  unknown role or database, read-only or standby
    │   └── PoolerDetected                 a transaction pooler (PgBouncer) between us and
    │                                      PostgreSQL: session advisory locks would not hold
    ├── TimedOut                   exit 3
    │   ├── LockWaitTimeout                another runner held a plugin's lock too long
    │   └── WaitTimeout                    `migrator wait` gave up
    ├── DatabaseUnreachable        exit 4
    │   └── ConnectionLost                 the connection dropped mid-run (restart, failover,
    │                                      pg_terminate_backend), and with it the plugin's
    │                                      lock: rolled back to a revision boundary, rerun
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

    def __init__(self, message: str, *, plugin: str | None = None,
                 revision: str | None = None) -> None:
        super().__init__(message)
        self.plugin = plugin
        self.revision = revision


class BackfillError(MigrationFailed):
    """A backfill was called wrongly, or a batch failed past its retries."""


class DatabaseError(MigratorError):
    """The database refused something outside a revision (permissions, a bad schema, ...)."""

    exit_code = 1


class WorkerDied(MigratorError):
    """A `--jobs` worker process ended without a result: its plugin's state is whatever its
    last committed revision left (a revision boundary), never reported as success."""

    exit_code = 1

    def __init__(self, message: str, *, plugin: str, signal_name: str | None) -> None:
        super().__init__(message)
        self.plugin = plugin
        self.signal_name = signal_name


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


class DependentsApplied(UsageError):
    """`downgrade` of a plugin that applied plugins depend on, without `--cascade`."""

    def __init__(self, message: str, *, plugin: str, dependents: Sequence[str]) -> None:
        super().__init__(message)
        self.plugin = plugin
        self.dependents = tuple(dependents)


class TargetRefused(UsageError):
    """The database cannot be used as configured, and waiting will not change that."""


class PoolerDetected(UsageError):
    """Consecutive transactions of one connection reached different server sessions."""


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
