"""Read and validate a tree's `plugin.toml` (discovery's; `migrator.discovery` re-exports it).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from migrator.errors import TreeError
from migrator.revisions import printable, read_with_identity, shown

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,47}\Z")  # \Z: `$` would allow a final newline
# Extension names as PostgreSQL ships them (`uuid-ossp` has a hyphen); always quoted.
EXTENSION_PATTERN = re.compile(r"^[a-z][a-z0-9_-]{0,62}\Z")
VERSION_TABLE_PATTERN = re.compile(r"^[a-z_][a-z0-9_]{0,62}\Z")
PLUGIN_TOML_KEYS = ("schema", "depends_on", "models", "extensions", "version_table",
                    "description")


def read_plugin_toml(path: Path, plugin: str) -> dict[str, Any]:
    """`plugin.toml` as a validated dict ({} when there is none)."""
    return read_plugin_toml_status(path, plugin)[0]


def read_plugin_toml_status(path: Path, plugin: str
                            ) -> tuple[dict[str, Any], os.stat_result | None]:
    """`read_plugin_toml`, and the file's identity taken before it was read."""
    if not os.path.lexists(path):
        return {}, None
    data, status = read_with_identity(str(path), plugin=plugin, what="plugin.toml")
    import tomllib

    where = printable(str(path))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise TreeError(f"{where}: not UTF-8 text; save plugin.toml as UTF-8",
                        plugin=plugin, path=str(path)) from None
    try:
        config = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TreeError(f"{where}: invalid TOML ({shown(str(exc), quote=False)}); fix the file",
                        plugin=plugin, path=str(path)) from None
    except RecursionError:  # tomllib recurses into nested arrays and tables
        raise TreeError(f"{where}: invalid TOML (nested too deeply); fix the file",
                        plugin=plugin, path=str(path)) from None
    validate_plugin_toml(config, where, plugin, str(path))
    return config, status


def validate_plugin_toml(data: dict[str, Any], where: str, plugin: str, path: str) -> None:
    def refuse(message: str) -> TreeError:
        return TreeError(f"{where}: {message}", plugin=plugin, path=path)

    unknown = sorted(set(data) - set(PLUGIN_TOML_KEYS))
    if unknown:
        raise refuse(f"unknown key {shown(unknown[0])}; allowed keys are "
                     + ", ".join(PLUGIN_TOML_KEYS))
    for key in ("schema", "models", "description", "version_table"):
        if key in data and not isinstance(data[key], str):
            raise refuse(f"{key} must be a string, got {type(data[key]).__name__}")
    if "models" in data and not re.match(r"^[\w.]+:[\w.]+\Z", data["models"]):
        raise refuse(f"models {shown(data['models'])} must look like 'package.module:name'")
    if "version_table" in data and not VERSION_TABLE_PATTERN.match(data["version_table"]):
        raise refuse(f"version_table {shown(data['version_table'])} must be a lowercase "
                     "identifier matching ^[a-z_][a-z0-9_]{0,62}$, like \"alembic_version\"")
    for key, pattern, what in (("depends_on", NAME_PATTERN, "plugin name"),
                               ("extensions", EXTENSION_PATTERN, "extension name")):
        values = data.get(key, [])
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            example = '["core"]' if key == "depends_on" else '["citext", "pg_trgm"]'
            raise refuse(f"{key} must be a list of {what}s, like {example}")
        for value in values:
            if not pattern.match(value):
                raise refuse(f"{key} entry {shown(value)} is not a valid {what}")
        if len(set(values)) != len(values):
            twice = next(v for v in values if values.count(v) > 1)
            raise refuse(f"{key} lists {twice!r} twice; list it once")
