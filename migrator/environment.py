"""What a running revision can reach of migrator: the meeting point of steps and backfill.

`migrator.steps` puts a `RevisionEnvironment` into Alembic's migration context options under
`ENVIRONMENT_KEY`; `migrator.backfill` finds it through `op.get_context()`, the way Alembic's
`op` reaches its implementation. Neither module imports the other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import psycopg

ENVIRONMENT_KEY = "migrator"


@dataclass(frozen=True, slots=True)
class RevisionEnvironment:
    """The plugin being migrated, the revision running now, and its work session.

    `session()` is the psycopg connection that holds the plugin's lock (a backfill runs its
    batches on it, so a batch runs only while the lock is held); `reset()` puts migrator's own
    settings back on it (each batch starts from them)."""

    plugin: str
    schema: str
    current_revision: Callable[[], str | None]
    session: Callable[[], psycopg.Connection[Any]]
    reset: Callable[[], None]
    should_stop: Callable[[], bool]
    forced: Callable[[], bool]
    log: Any


def current_environment(context: Any) -> RevisionEnvironment | None:
    """The environment in Alembic's migration context, or None outside a migrator run."""
    opts = getattr(context, "opts", None) or {}
    environment = opts.get(ENVIRONMENT_KEY)
    return environment if isinstance(environment, RevisionEnvironment) else None
