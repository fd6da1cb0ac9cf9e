"""The public API plugin authors import is pinned: changing it is a decision, not an accident."""

from __future__ import annotations

import migrator


def test_the_public_api_is_exactly_this() -> None:
    assert sorted(migrator.__all__) == [
        "BackfillError", "BackfillResult", "MigrationFailed", "MigratorError", "__version__",
        "backfill"]
    for name in migrator.__all__:
        assert hasattr(migrator, name), name


def test_backfill_errors_are_migration_failures_with_exit_1() -> None:
    assert issubclass(migrator.BackfillError, migrator.MigrationFailed)
    assert migrator.BackfillError("x").exit_code == 1
