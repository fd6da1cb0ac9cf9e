"""Plugin trees as they really are: hostile files (loops, FIFOs, unreadable and non-UTF-8
files), trees with several heads (read-only commands show them, migrating ones refuse, `merge`
joins them) and the plugin.toml keys `extensions`, `version_table` and `schema = "public"`.
Trees are built in temporary directories: FIFOs and symlink loops do not belong in git."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import error_lines, fetch, version_of
from treebuilder import Rev, write_plugin

from migrator.discovery import Plugin, discover
from migrator.errors import TreeError
from migrator.plan import Plan, PluginPlan

UNREACHABLE = ["--database-url", "postgresql://app@127.0.0.1:1/db", "--connect-timeout", "1s"]


def refused_naming(run_cli: Any, root: Path, path: Path, *command: str) -> str:
    """Run `command` on `root` against an unreachable database: exit 2, one error line naming
    `path`, no traceback, refused before connecting. Returns the line."""
    result = run_cli(*UNREACHABLE, "--migrations-dir", root, *command, timeout=60)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    [line] = error_lines(result.stderr)
    assert str(path) in line, line
    assert "unreachable" not in line
    return line


# -- hostile files ----------------------------------------------------------------------------


def test_a_looping_plugin_directory_is_refused_naming_it(run_cli: Any, tmp_path: Path) -> None:
    """A symlink loop standing where a plugin directory would be is an error, not a plugin
    that silently never runs; so is a `versions` link that loops."""
    root = tmp_path / "plugins"
    write_plugin(root, "core", [Rev("a1", None)])
    os.symlink(root / "loop", root / "loop")
    line = refused_naming(run_cli, root, root / "loop", "plugins")
    assert "symlink loop" in line
    os.unlink(root / "loop")
    shutil.rmtree(root / "core" / "versions")
    os.symlink(root / "core" / "versions", root / "core" / "versions")
    refused_naming(run_cli, root, root / "core" / "versions", "status")


def test_a_directory_loop_inside_versions_is_refused(run_cli: Any, tmp_path: Path) -> None:
    """`versions/x.py` linking back to its own directory is a directory, not a revision file,
    and is never walked into."""
    root = tmp_path / "plugins"
    plugin = write_plugin(root, "core", [Rev("a1", None)])
    os.symlink(plugin / "versions", plugin / "versions" / "x.py")
    line = refused_naming(run_cli, root, plugin / "versions" / "x.py", "upgrade")
    assert "is a directory, not a regular file" in line


def test_a_fifo_named_py_never_hangs(run_cli: Any, tmp_path: Path) -> None:
    """A FIFO named `*.py` (nobody will ever write to it) is refused at once."""
    root = tmp_path / "plugins"
    plugin = write_plugin(root, "core", [Rev("a1", None)])
    os.mkfifo(plugin / "versions" / "0002_fifo.py")
    line = refused_naming(run_cli, root, plugin / "versions" / "0002_fifo.py", "heads")
    assert "is a FIFO" in line


def test_a_file_the_os_refuses_to_read_is_refused_naming_it(run_cli: Any,
                                                             tmp_path: Path) -> None:
    """A revision file whose read fails (here /proc/self/mem, which even root cannot read
    from its start: EIO) exits 2 naming it, under any user."""
    root = tmp_path / "plugins"
    plugin = write_plugin(root, "core", [Rev("a1", None)])
    os.symlink("/proc/self/mem", plugin / "versions" / "0002_mem.py")
    line = refused_naming(run_cli, root, plugin / "versions" / "0002_mem.py", "plugins")
    assert "cannot read revision file" in line


def test_non_utf8_files_are_refused_naming_them(run_cli: Any, tmp_path: Path) -> None:
    """A Latin-1 revision file (no coding cookie) and a Latin-1 plugin.toml exit 2 naming
    the file."""
    root = tmp_path / "plugins"
    plugin = write_plugin(root, "core", [Rev("a1", None)])
    [revision] = (plugin / "versions").iterdir()
    revision.write_bytes(revision.read_bytes().replace(b"revision a1", b"caf\xe9"))
    assert "not UTF-8" in refused_naming(run_cli, root, revision, "plugins")
    shutil.rmtree(plugin)
    plugin = write_plugin(root, "core", [Rev("a1", None)])
    (plugin / "plugin.toml").write_bytes(b'description = "caf\xe9"\n')
    assert "not UTF-8" in refused_naming(run_cli, root, plugin / "plugin.toml", "plugins")


@pytest.fixture
def shared_tree() -> Iterator[Path]:
    """A tree in a directory any user can reach (pytest's tmp_path is private to its user)."""
    scratch = Path(tempfile.mkdtemp(prefix="migrator-unreadable-"))
    scratch.chmod(0o755)
    try:
        yield scratch
    finally:
        for path in scratch.rglob("*"):
            if not path.is_symlink():
                path.chmod(0o755)
        shutil.rmtree(scratch)


def discover_as_unprivileged(root: Path) -> str:
    """Discovery of `root` in a forked child that runs as `nobody` when this process is root
    (root reads files whatever their mode); its outcome as text."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report and leave without running pytest's teardown
        try:
            os.close(read_end)
            if os.geteuid() == 0:
                os.setgroups([])
                os.setgid(65534)
                os.setuid(65534)
            try:
                discover(root, entry_points=False)
                outcome = "discovered"
            except TreeError as exc:
                outcome = f"TreeError: {exc}"
            except BaseException as exc:  # reported to the parent as text
                outcome = f"{type(exc).__name__}: {exc}"
            os.write(write_end, outcome.encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        outcome = pipe.read().decode()
    os.waitpid(pid, 0)
    return outcome


def test_unreadable_file_and_directory_modes_are_tree_errors(shared_tree: Path) -> None:
    """chmod 000 on a revision file, on plugin.toml and on versions/: a TreeError naming the
    path (checked as an unprivileged user, since root ignores the mode)."""
    plugin = write_plugin(shared_tree, "core", [Rev("a1", None), Rev("b2", "a1")])
    for path in (plugin, plugin / "versions", plugin / "plugin.toml",
                 *(plugin / "versions").iterdir()):
        path.chmod(0o755 if path.is_dir() else 0o644)
    assert discover_as_unprivileged(shared_tree) == "discovered"

    revision = sorted((plugin / "versions").iterdir())[1]
    revision.chmod(0)
    assert discover_as_unprivileged(shared_tree) == (
        f"TreeError: {revision}: cannot read revision file (Permission denied); fix or "
        "remove it")
    revision.chmod(0o644)

    (plugin / "plugin.toml").chmod(0)
    assert discover_as_unprivileged(shared_tree) == (
        f"TreeError: {plugin / 'plugin.toml'}: cannot read plugin.toml (Permission denied); "
        "fix or remove it")
    (plugin / "plugin.toml").chmod(0o644)

    (plugin / "versions").chmod(0)
    assert discover_as_unprivileged(shared_tree) == (
        f"TreeError: {plugin / 'versions'}: cannot list the versions directory (Permission "
        "denied); fix its permissions or remove it")


# -- several heads ----------------------------------------------------------------------------


def forked_tree(root: Path) -> Path:
    """base1 with two children, left1 and right1: two heads."""
    return write_plugin(root, "forked", [
        Rev("base1", None, "op.execute('CREATE TABLE t_base (id int)')",
            "op.execute('DROP TABLE t_base')"),
        Rev("left1", "base1", "op.execute('CREATE TABLE t_left (id int)')",
            "op.execute('DROP TABLE t_left')"),
        Rev("right1", "base1", "op.execute('CREATE TABLE t_right (id int)')",
            "op.execute('DROP TABLE t_right')")])


def test_several_heads_are_discovered_and_kept(tmp_path: Path) -> None:
    """Discovery accepts several heads: `heads` lists them, `head` is None, and
    `require_single_head` refuses with the merge command."""
    forked_tree(tmp_path)
    [plugin] = discover(tmp_path, entry_points=False)
    assert (plugin.heads, plugin.head) == (("left1", "right1"), None)
    with pytest.raises(TreeError, match='migrator merge --plugin forked -m "merge heads"'):
        plugin.require_single_head()


def test_the_plan_of_several_heads_is_shown_not_run(tmp_path: Path) -> None:
    """With several heads the plan's state is multiple_heads and its pending list is what
    reaching every head would apply (nothing counts as pending for `upgrade`)."""
    forked_tree(tmp_path)
    [plugin] = discover(tmp_path, entry_points=False)
    fresh = PluginPlan.build(plugin, ())
    assert (fresh.state, fresh.target, fresh.pending) == (
        "multiple_heads", None, ("base1", "left1", "right1"))
    on_left = PluginPlan.build(plugin, ("left1",))
    assert (on_left.state, on_left.pending) == ("multiple_heads", ("right1",))
    assert Plan((fresh,)).pending == () and Plan((fresh,)).multiple_heads == (fresh,)


def test_a_depends_on_revision_is_applied_first(tmp_path: Path) -> None:
    """Alembic's `depends_on` (a revision of the same tree) orders the plan like a parent,
    without making its target a non-head."""
    plugin_dir = write_plugin(tmp_path, "core", [Rev("a1", None), Rev("b2", "a1"),
                                                 Rev("x1", None)])
    second = next(p for p in (plugin_dir / "versions").iterdir() if "b2" in p.name)
    second.write_text(second.read_text().replace("depends_on = None", 'depends_on = "x1"'))
    [plugin] = discover(tmp_path, entry_points=False)
    assert plugin.revision("b2").depends_on == ("x1",)  # type: ignore[union-attr]
    assert plugin.heads == ("b2", "x1")
    plan = PluginPlan.build(plugin, (), target="b2")
    assert plan.pending.index("x1") < plan.pending.index("b2")


def test_read_only_commands_show_several_heads(run_cli: Any, cli_env: dict[str, str],
                                               database_url: str, tmp_path: Path) -> None:
    """`plugins`, `heads`, `history` and `status` work on a tree with two heads and show both;
    status says multiple_heads with what reaching them would apply; `status --check` counts
    it (exit 5)."""
    root = tmp_path / "plugins"
    forked_tree(root)
    env = {**cli_env, "MIGRATOR_DATABASE_URL": database_url, "MIGRATOR_MIGRATIONS_DIR": str(root)}

    listed = run_cli("plugins", "--format", "json", env=env)
    assert listed.returncode == 0, listed.stderr
    [row] = json.loads(listed.stdout)["plugins"]
    assert (row["head"], row["heads"]) == (None, ["left1", "right1"])
    heads = run_cli("heads", env=env)
    assert heads.returncode == 0, heads.stderr
    assert "left1, right1" in heads.stdout
    history = run_cli("history", "--plugin", "forked", "--format", "json", env=env)
    assert history.returncode == 0, history.stderr
    assert json.loads(history.stdout)["heads"] == ["left1", "right1"]

    status = run_cli("status", "--format", "json", env=env)
    assert status.returncode == 0, status.stderr
    [item] = json.loads(status.stdout)["plugins"]
    assert item["state"] == "multiple_heads"
    assert item["heads"] == ["left1", "right1"] and item["head"] is None
    assert item["pending"] == ["base1", "right1", "left1"]  # as `alembic upgrade heads` walks
    checked = run_cli("status", "--check", env=env)
    assert checked.returncode == 5, checked.stderr
    assert "forked (multiple_heads)" in error_lines(checked.stderr)[0]
    assert "migrator merge --plugin forked" in error_lines(checked.stderr)[0]


@pytest.mark.parametrize("command", [
    ["upgrade"], ["upgrade", "--plugin", "forked"], ["upgrade", "--sql"], ["upgrade", "--dry-run"],
    ["downgrade", "--plugin", "forked", "--to", "base"],
    ["downgrade", "--plugin", "forked", "--to", "base", "--sql"],
    ["downgrade", "--plugin", "forked", "--to", "base", "--dry-run"],
    ["stamp", "--plugin", "forked", "base1"], ["wait", "--timeout", "1s"],
], ids=" ".join)
def test_migrating_commands_refuse_several_heads(command: list[str], run_cli: Any,
                                                 cli_env: dict[str, str], database_url: str,
                                                 tmp_path: Path) -> None:
    """Every command that would migrate (or render a migration) exits 2 naming both heads and
    the merge command, and changes nothing."""
    root = tmp_path / "plugins"
    forked_tree(root)
    env = {**cli_env, "MIGRATOR_DATABASE_URL": database_url, "MIGRATOR_MIGRATIONS_DIR": str(root)}
    result = run_cli(*command, env=env)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    [line] = error_lines(result.stderr)
    assert line == ("migrator: error: plugin 'forked' has 2 heads (left1, right1); create a "
                    'merge revision: migrator merge --plugin forked -m "merge heads"')
    assert fetch(database_url, "SELECT 1 FROM pg_namespace WHERE nspname = 'forked'") == []


def test_merge_then_upgrade_applies_every_branch(run_cli: Any, cli_env: dict[str, str],
                                                 database_url: str, tmp_path: Path) -> None:
    """`merge` writes a revision whose down_revision is both heads, with Alembic's own
    generator; the tree has one head again and `upgrade` applies every revision of both
    branches and the merge."""
    root = tmp_path / "plugins"
    plugin = forked_tree(root)
    env = {**cli_env, "MIGRATOR_DATABASE_URL": database_url, "MIGRATOR_MIGRATIONS_DIR": str(root)}
    merged = run_cli("merge", "--plugin", "forked", "-m", "join the branches", env=env)
    assert merged.returncode == 0, merged.stderr
    [found] = discover(root, entry_points=False)
    assert found.head is not None and found.heads == (found.head,)
    merge = found.revision(found.head)
    assert merge is not None and merge.down_revisions == ("left1", "right1")
    assert merge.path.parent == plugin / "versions" and merge.message == "join the branches"

    done = run_cli("upgrade", env=env)
    assert done.returncode == 0, done.stderr
    assert version_of(database_url, "forked") == [found.head]
    tables = fetch(database_url, "SELECT tablename FROM pg_tables WHERE schemaname = 'forked' "
                   "AND tablename LIKE 't\\_%' ORDER BY 1")
    assert tables == [("t_base",), ("t_left",), ("t_right",)]
    status = run_cli("status", "--check", env=env)
    assert status.returncode == 0, status.stderr


def test_merge_needs_two_heads(run_cli: Any, tmp_path: Path) -> None:
    """A tree with one head has nothing to merge: exit 2, no file written."""
    root = tmp_path / "plugins"
    plugin = write_plugin(root, "linear", [Rev("a1", None)])
    result = run_cli("--migrations-dir", root, "merge", "--plugin", "linear", "-m", "x")
    assert result.returncode == 2
    assert "nothing to merge" in error_lines(result.stderr)[0]
    assert len(list((plugin / "versions").iterdir())) == 1


# -- plugin.toml keys -------------------------------------------------------------------------


def test_extensions_and_version_table_are_read_and_shown(run_cli: Any, tmp_path: Path) -> None:
    """`extensions` and `version_table` land on the Plugin and in `plugins --format json`;
    the defaults are none and alembic_version."""
    root = tmp_path / "plugins"
    write_plugin(root, "app", [Rev("a1", None)], toml='schema = "public"\n'
                 'extensions = ["citext", "pg_trgm", "uuid-ossp"]\n'
                 'version_table = "app_alembic_version"')
    write_plugin(root, "core", [Rev("c1", None)])
    app, core = discover(root, entry_points=False)
    assert (app.schema, app.extensions, app.version_table) == (
        "public", ("citext", "pg_trgm", "uuid-ossp"), "app_alembic_version")
    assert (core.extensions, core.version_table) == ((), "alembic_version")
    listed = run_cli("--migrations-dir", root, "plugins", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    rows = {p["name"]: p for p in json.loads(listed.stdout)["plugins"]}
    assert rows["app"]["extensions"] == ["citext", "pg_trgm", "uuid-ossp"]
    assert rows["app"]["version_table"] == "app_alembic_version"


@pytest.mark.parametrize(("toml", "problem"), [
    ('extensions = "citext"', 'extensions must be a list of extension names, like '
                              '["citext", "pg_trgm"]'),
    ('extensions = ["citext; DROP SCHEMA public"]',
     "extensions entry 'citext; DROP SCHEMA public' is not a valid extension name"),
    ('extensions = ["Citext"]', "extensions entry 'Citext' is not a valid extension name"),
    ('extensions = ["citext", "citext"]', "extensions lists 'citext' twice; list it once"),
    ("version_table = 3", "version_table must be a string, got int"),
    ('version_table = "alembic version"', "version_table 'alembic version' must be a lowercase "
                                          "identifier"),
    ('version_table = "x\\n"', "version_table 'x\\n' must be a lowercase identifier"),
    ('schema = "pg_catalog"', "schema 'pg_catalog' is not allowed"),
])
def test_bad_plugin_toml_values_are_refused(toml: str, problem: str, tmp_path: Path) -> None:
    """Each bad value is a TreeError naming the plugin.toml and what is wrong."""
    plugin = write_plugin(tmp_path, "core", [Rev("a1", None)], toml=toml)
    with pytest.raises(TreeError) as caught:
        Plugin.from_directory(plugin, source="test")
    assert str(caught.value).startswith(f"{plugin / 'plugin.toml'}: ")
    assert problem in str(caught.value)


def test_two_plugins_in_public_are_refused_naming_both(run_cli: Any, tmp_path: Path) -> None:
    """`schema = "public"` is for one plugin: a second exits 2 naming both."""
    root = tmp_path / "plugins"
    write_plugin(root, "app", [Rev("a1", None)], toml='schema = "public"')
    write_plugin(root, "host", [Rev("h1", None)], toml='schema = "public"')
    result = run_cli("--migrations-dir", root, "plugins")
    assert result.returncode == 2
    [line] = error_lines(result.stderr)
    assert "plugins 'app' and 'host' both use schema 'public'" in line
