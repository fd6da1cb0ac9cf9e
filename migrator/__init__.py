"""migrator: one Alembic tree, schema and version table per plugin, applied lock-safely.

Plugin authors import from here (`from migrator import backfill`). Every revision imports this
module, and so does every run, the pod start with nothing to do included: it imports nothing
itself. `backfill` and `BackfillResult` load `migrator.backfill_run` when first asked for (PEP
562), which is why that module is not called `migrator.backfill`: importing a submodule of
that name would replace the function with the module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from migrator.backfill_run import BackfillResult, backfill
    from migrator.errors import BackfillError, MigrationFailed, MigratorError

__all__ = [
    "BackfillError",
    "BackfillResult",
    "MigrationFailed",
    "MigratorError",
    "__version__",
    "backfill",
]

_HOMES = {"backfill": "migrator.backfill_run", "BackfillResult": "migrator.backfill_run",
          "BackfillError": "migrator.errors", "MigrationFailed": "migrator.errors",
          "MigratorError": "migrator.errors"}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'migrator' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # asked once: later lookups are plain attribute reads
    return value
