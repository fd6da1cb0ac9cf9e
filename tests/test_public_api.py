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


def test_backfill_is_the_function_whatever_was_imported_first() -> None:
    """The package loads `backfill` on first use; importing its module (as the runner and the
    tests do) must not turn `from migrator import backfill` into a module."""
    import subprocess
    import sys

    probe = ("import migrator.backfill_run, migrator.backfill_sql; "
             "from migrator import backfill, BackfillResult; import migrator; "
             "print(callable(backfill), migrator.backfill is backfill, BackfillResult.__name__)")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            check=True)
    assert result.stdout.split() == ["True", "True", "BackfillResult"]
