"""The example platform's own migration tests, written as a plugin author writes them: the
checks of the `migrator.testing` pytest plugin (registered by migrator's `pytest11` entry
point), for every plugin in `plugin_migrations/`.

Each test gets a fresh database: stairway, round trip, and models-match-migrations (panels is
the plugin that names models; the others are skipped there).
"""

from __future__ import annotations

from migrator.testing import PluginTreeChecks


class TestExamplePlatform(PluginTreeChecks):
    """core, panels and analysis_results pass every ready-made check."""
