"""migrator: one Alembic tree, schema and version table per plugin, applied lock-safely.

Plugin authors import from here (`from migrator import backfill`). Every revision imports this
module, and so does every run: it stays light (no typer, no SQLAlchemy, no tenacity at import).
"""

__version__ = "0.1.0"

from migrator.backfill import BackfillError, BackfillResult, backfill
from migrator.errors import MigrationFailed, MigratorError

__all__ = [
    "BackfillError",
    "BackfillResult",
    "MigrationFailed",
    "MigratorError",
    "__version__",
    "backfill",
]
