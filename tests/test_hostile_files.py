"""Files in a tree that are not what they claim: exit 2 naming the path, never a hang or a
traceback, and no connection opened (DESIGN.md "Plugin trees"; issue: faults and hostile
plugins). The trees are built in temporary directories: FIFOs and symlink loops do not belong
in git."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from helpers import error_lines
from treebuilder import Rev, write_plugin

Hostile = Callable[[Path], Path]  # makes the hostile entry in a plugin dir, returns its path


def symlink_loop_py(plugin: Path) -> Path:
    target = plugin / "versions" / "0002_loop.py"
    os.symlink(target, target)  # points at itself
    return target


def symlink_pair_loop(plugin: Path) -> Path:
    a, b = plugin / "versions" / "a.py", plugin / "versions" / "b.py"
    os.symlink(b, a)
    os.symlink(a, b)
    return a


def fifo_py(plugin: Path) -> Path:
    target = plugin / "versions" / "0002_fifo.py"
    os.mkfifo(target)
    return target


def directory_py(plugin: Path) -> Path:
    target = plugin / "versions" / "0002_directory.py"
    target.mkdir()
    return target


def dangling_py(plugin: Path) -> Path:
    target = plugin / "versions" / "0002_gone.py"
    os.symlink(plugin / "nowhere.py", target)
    return target


def fifo_toml(plugin: Path) -> Path:
    target = plugin / "plugin.toml"
    target.unlink()
    os.mkfifo(target)
    return target


def looping_toml(plugin: Path) -> Path:
    target = plugin / "plugin.toml"
    target.unlink()
    os.symlink(target, target)
    return target


def non_utf8_toml(plugin: Path) -> Path:
    target = plugin / "plugin.toml"
    target.write_bytes(b'description = "caf\xe9"\n')
    return target


@pytest.mark.parametrize("make", [symlink_loop_py, symlink_pair_loop, fifo_py, directory_py,
                                  dangling_py, fifo_toml, looping_toml, non_utf8_toml],
                         ids=lambda f: f.__name__)
def test_a_hostile_file_is_refused_naming_it(
    make: Hostile, run_cli: Any, cli_env: dict[str, str], tmp_path: Path,
) -> None:
    root = tmp_path / "plugins"
    plugin = write_plugin(root, "hostile", [Rev("h1", None)])
    path = make(plugin)
    for command in (["status"], ["upgrade"], ["plugins"]):
        result = run_cli("--database-url", "postgresql://app@127.0.0.1:1/db",
                         "--connect-timeout", "1s", "--migrations-dir", root, *command,
                         env=cli_env, timeout=60)
        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stderr
        [line] = error_lines(result.stderr)
        assert str(path) in line, line
        assert "unreachable" not in line  # refused before connecting
