"""What a running revision can reach of migrator: the meeting point of runner and backfill.

The runner puts a `RevisionEnvironment` into Alembic's migration context options under
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
    """The plugin being migrated, the revision running now, and how to get a connection."""

    plugin: str
    schema: str
    current_revision: Callable[[], str | None]
    connect: Callable[[], psycopg.Connection[Any]]  # new, autocommit, set up like the revision's
    should_stop: Callable[[], bool]
    log: Any


def current_environment(context: Any) -> RevisionEnvironment | None:
    """The environment in Alembic's migration context, or None outside a migrator run."""
    opts = getattr(context, "opts", None) or {}
    environment = opts.get(ENVIRONMENT_KEY)
    return environment if isinstance(environment, RevisionEnvironment) else None
