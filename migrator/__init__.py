"""migrator: one Alembic tree, schema and version table per plugin, applied lock-safely.

Plugin authors import from here; this module stays light because every revision imports it.
"""

from migrator.errors import MigrationFailed, MigratorError

__version__ = "0.1.0"

__all__ = ["MigrationFailed", "MigratorError", "__version__"]
