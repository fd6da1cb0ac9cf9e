"""Discovery: plugin trees, `plugin.toml`, revision files, entry points and dependency order.

No database: these call `migrator.discovery` directly on the scenario trees in tests/trees/.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from migrator.discovery import Plugin, discover
from migrator.errors import ConfigError, DependencyError, TreeError
from migrator.graph import with_dependencies

Tree = Callable[[str], Path]
REPO_ROOT = Path(__file__).resolve().parent.parent


def only_dir(path: Path) -> list[Plugin]:
    """Discovery of `path` alone, blind to whatever entry points this interpreter has."""
    return discover(path, entry_points=False)


def tree_error(path: Path) -> TreeError:
    with pytest.raises(TreeError) as caught:
        only_dir(path)
    return caught.value


def install_distribution(site: Path, *, plugin: str = "extplug",
                         module: str = "extplug_pkg") -> None:
    """Make `site` look like an installed distribution declaring a `migrator.plugins` entry."""
    info = site / f"{plugin}_dist-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {plugin}-dist\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[migrator.plugins]\n{plugin} = {module}\n")


# -- reading trees --------------------------------------------------------------------------


def test_linear_tree_is_read_without_importing(tree: Tree) -> None:
    """A plain tree yields one plugin named after its directory, schema = name, its revision
    ids, parents and messages read from plain and annotated assignments, and its one head."""
    migrations = tree("disc_linear")
    [core] = only_dir(migrations)
    assert core.name == "core"
    assert core.schema == "core"
    assert core.source == str(migrations / "core")
    assert core.depends_on == ()
    assert [(r.revision, r.down_revisions, r.message) for r in core.revisions] == [
        ("a1", (), "create accounts"), ("b2", ("a1",), "create teams"),
        ("c3", ("b2",), "create members")]
    assert core.head == "c3"


def test_directory_without_versions_folder_is_not_a_plugin(tree: Tree) -> None:
    """A sibling folder with no versions/ inside (docs, scratch) is ignored, not an error."""
    migrations = tree("disc_linear")
    assert (migrations / "scratch").is_dir()
    assert [p.name for p in only_dir(migrations)] == ["core"]


def test_revision_modules_are_not_imported(tree: Tree) -> None:
    """A revision whose module body raises when imported is still discovered: discovery reads
    ids from the source text and never runs it."""
    [core] = only_dir(tree("disc_module_raises"))
    assert core.head == "a1"


def test_discovery_imports_neither_alembic_nor_sqlalchemy(tree: Tree) -> None:
    """Discovering and ordering trees loads neither alembic nor SQLAlchemy (the no-op run's
    start-up budget)."""
    script = (
        "import sys, pathlib\n"
        "from migrator.discovery import discover\n"
        "found = discover(pathlib.Path(sys.argv[1]))\n"
        "print([p.name for p in found], 'alembic' in sys.modules, 'sqlalchemy' in sys.modules)\n")
    result = subprocess.run([sys.executable, "-c", script, str(tree("disc_dependencies"))],
                            cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "['mid', 'zeta', 'alpha', 'beta'] False False"


def test_plugin_toml_keys_are_read(tree: Tree) -> None:
    """plugin.toml sets schema, depends_on, models and description; without it the schema is
    the plugin name."""
    core, panels = only_dir(tree("disc_plugin_toml"))
    assert (core.name, core.schema, core.depends_on, core.models, core.description) == (
        "core", "core", (), None, "")
    assert (panels.name, panels.schema, panels.depends_on) == ("panels", "panel_data", ("core",))
    assert panels.models == "panels_pkg.models:metadata"
    assert panels.description == "Lab panels and their tests"


def test_empty_versions_folder_is_a_plugin_without_head(tree: Tree) -> None:
    """A new plugin with an empty versions/ is discovered with no revisions and no head."""
    [core] = only_dir(tree("disc_empty"))
    assert (core.name, core.revisions, core.head) == ("core", (), None)


def test_missing_migrations_dir_is_a_config_error(tmp_path: Path) -> None:
    """No migrations directory and no entry-point plugins: a ConfigError saying how to point
    migrator at the trees."""
    missing = tmp_path / "plugin_migrations"
    with pytest.raises(ConfigError) as caught:
        only_dir(missing)
    assert str(caught.value) == (
        f"migrations directory {missing} does not exist and no installed package declares "
        "migrator.plugins; pass --migrations-dir or set MIGRATOR_MIGRATIONS_DIR")


# -- names and schemas ----------------------------------------------------------------------


def test_plugin_directory_name_must_follow_the_rule(tree: Tree) -> None:
    """A directory name outside ^[a-z][a-z0-9_]{0,47}$ is a TreeError naming the directory and
    asking for a rename."""
    migrations = tree("bad_plugin_name")
    error = tree_error(migrations)
    assert str(error) == (
        f"{migrations / 'Core-Plugin'}: plugin name 'Core-Plugin' must match "
        "^[a-z][a-z0-9_]{0,47}$ (lowercase letters, digits, underscores); rename the directory")
    assert error.plugin == "Core-Plugin"


@pytest.mark.parametrize("name", ["a", "panels_v2", "x" * 48, "a_1_b"])
def test_names_within_the_rule_are_accepted(tree: Tree, name: str) -> None:
    """Names from one letter up to 48 characters of [a-z0-9_], starting with a letter, pass."""
    plugin = Plugin.from_directory(tree("disc_linear") / "core", source="test", name=name)
    assert (plugin.name, plugin.schema) == (name, name)


@pytest.mark.parametrize("name", ["A", "Panels", "1panel", "_panel", "x" * 49, "pan-els",
                                  "pan.els", "pan els", "pänels", "panels\n"])
def test_names_outside_the_rule_are_refused(tree: Tree, name: str) -> None:
    """Uppercase, leading digit or underscore, 49 characters, punctuation, non-ASCII and a
    trailing newline are all refused as plugin names."""
    with pytest.raises(TreeError, match="must match"):
        Plugin.from_directory(tree("disc_linear") / "core", source="test", name=name)


@pytest.mark.parametrize(
    ("scenario", "schema"),
    [("bad_schema_migrator", "migrator"),
     ("bad_schema_information_schema", "information_schema"),
     ("bad_schema_pg_prefix", "pg_panels"), ("bad_schema_invalid", "Panel Data")],
)
def test_reserved_or_invalid_schema_is_refused(tree: Tree, scenario: str, schema: str) -> None:
    """migrator, information_schema, pg_* and non-identifiers are refused as schemas,
    naming the plugin.toml and the allowed form."""
    migrations = tree(scenario)
    error = tree_error(migrations)
    assert str(error) == (
        f"{migrations / 'core' / 'plugin.toml'}: schema {schema!r} is not allowed; use a "
        "lowercase identifier matching ^[a-z][a-z0-9_]{0,47}$ other than migrator, "
        "information_schema or pg_* (public: for one plugin only)")
    assert error.plugin == "core"


def test_public_is_allowed_for_one_plugin_only(tree: Tree) -> None:
    """One plugin may live in `public` (an adopted Alembic app); two claiming it are refused
    naming both."""
    migrations = tree("bad_schema_public")
    error = tree_error(migrations)
    assert str(error) == (
        "plugins 'core' and 'host' both use schema 'public' (public is for one plugin only: "
        "the host application or an adopted Alembic app); set a different `schema` in one "
        "plugin.toml")
    shutil.rmtree(migrations / "host")
    [core] = only_dir(migrations)
    assert core.schema == "public"
    assert core.version_table == "alembic_version"


def test_plugin_named_like_a_reserved_schema_is_refused(tree: Tree) -> None:
    """A plugin called `migrator` without its own schema would land in the reserved schema."""
    with pytest.raises(TreeError, match="schema 'migrator' is not allowed"):
        Plugin.from_directory(tree("disc_linear") / "core", source="test", name="migrator")


def test_schema_with_trailing_newline_is_refused(tree: Tree) -> None:
    """`schema = "core_data\\n"` is not a valid identifier: the name rule is a full match, not
    one that lets a trailing newline through."""
    error = tree_error(tree("bad_schema_newline"))
    assert "schema 'core_data\\n' is not allowed" in str(error)


def test_two_plugins_may_not_share_a_schema(tree: Tree) -> None:
    """Two plugins configured with the same schema are a TreeError naming both and the fix."""
    error = tree_error(tree("bad_schema_shared"))
    assert str(error) == (
        "plugins 'alpha' and 'beta' both use schema 'shared'; set a different `schema` in one "
        "plugin.toml")


# -- plugin.toml ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scenario", "problem"),
    [("bad_toml_unknown_key",
      "unknown key 'schemas'; allowed keys are schema, depends_on, models, extensions, "
      "version_table, description"),
     ("bad_toml_wrong_type", "schema must be a string, got int"),
     ("bad_toml_depends_not_list", 'depends_on must be a list of plugin names, like ["core"]')],
)
def test_plugin_toml_content_is_validated(tree: Tree, scenario: str, problem: str) -> None:
    """An unknown key or a value of the wrong type in plugin.toml is a TreeError naming the file
    and the allowed form."""
    migrations = tree(scenario)
    error = tree_error(migrations)
    path = migrations / "core" / "plugin.toml"
    assert str(error) == f"{path}: {problem}"
    assert error.path == str(path)


def test_invalid_toml_names_the_file(tree: Tree) -> None:
    """plugin.toml that is not TOML is a TreeError naming the file and the parser's position."""
    migrations = tree("bad_toml_invalid")
    message = str(tree_error(migrations))
    assert message.startswith(f"{migrations / 'core' / 'plugin.toml'}: invalid TOML (")
    assert "line 1" in message
    assert message.endswith("; fix the file")


# -- revision files -------------------------------------------------------------------------


def test_two_heads_lists_them_and_suggests_a_merge(tree: Tree) -> None:
    """A tree with two heads is discovered with both heads; migrating it is refused with both
    heads listed and the merge command to run."""
    [core] = only_dir(tree("bad_two_heads"))
    assert core.heads == ("b2", "c3")
    assert core.head is None
    with pytest.raises(TreeError) as caught:
        core.require_single_head()
    error = caught.value
    assert str(error) == ("plugin 'core' has 2 heads (b2, c3); create a merge revision: "
                          'migrator merge --plugin core -m "merge heads"')
    assert error.plugin == "core"
    assert error.heads == ("b2", "c3")


def test_merge_revision_gives_one_head(tree: Tree) -> None:
    """A merge revision (down_revision a tuple) joins two branches into a single head."""
    [core] = only_dir(tree("disc_merge"))
    assert core.head == "d4"
    assert core.revision("d4") is not None
    assert core.revision("d4").down_revisions == ("b2", "c3")  # type: ignore[union-attr]


def test_merge_revision_laid_out_over_several_lines_gives_one_head(tree: Tree) -> None:
    """A merge revision whose down_revision tuple spans several lines (as black and ruff format
    it) is an ordinary Alembic file and joins the branches like a one-line tuple."""
    [core] = only_dir(tree("disc_merge_multiline"))
    assert core.head == "d4"
    assert core.revision("d4").down_revisions == ("b2", "c3")  # type: ignore[union-attr]


def test_unknown_down_revision_names_the_file(tree: Tree) -> None:
    """A down_revision no file of the tree declares is a TreeError naming that file."""
    migrations = tree("bad_unknown_down_revision")
    path = migrations / "core" / "versions" / "0002_create_teams.py"
    error = tree_error(migrations)
    assert str(error) == (
        f"{path}: down_revision 'zz9' is not a revision of plugin 'core'; point it at an "
        "existing revision of this tree")
    assert error.path == str(path)


def test_duplicate_revision_id_names_both_files(tree: Tree) -> None:
    """Two files declaring the same revision id are refused, both files named."""
    migrations = tree("bad_duplicate_revision")
    versions = migrations / "core" / "versions"
    assert str(tree_error(migrations)) == (
        f"{versions / '0002_create_teams.py'}: revision id 'a1' is also used by "
        f"{versions / '0001_create_core_items.py'}; give one of them a new id")


def test_syntax_error_in_revision_header_names_file_and_line(tree: Tree) -> None:
    """A revision file whose identifiers cannot be parsed is refused with file:line and the
    parser's message."""
    migrations = tree("bad_syntax_error")
    message = str(tree_error(migrations))
    path = migrations / "core" / "versions" / "0002_create_teams.py"
    assert message.startswith(f"{path}:6: syntax error in revision file (unterminated string")
    assert message.endswith("; fix the file")


@pytest.mark.parametrize("missing", ["revision", "down_revision"])
def test_missing_identifier_assignment_is_refused(tree: Tree, missing: str) -> None:
    """A revision file without `revision = ...` or without `down_revision = ...` is refused,
    naming the file and what every revision needs."""
    migrations = tree(f"bad_missing_{missing}")
    path = migrations / "core" / "versions" / "0002_create_teams.py"
    assert str(tree_error(migrations)) == (
        f"{path}: no `{missing} = ...` assignment; every revision file needs `revision` and "
        "`down_revision` (None for the first revision)")


@pytest.mark.parametrize(
    ("scenario", "shown"),
    [("bad_revision_id_quote", "\"b2'; DROP SCHEMA public; --\""),
     ("bad_revision_id_long", repr("b" * 33))],
)
def test_revision_id_must_be_short_and_plain(tree: Tree, scenario: str, shown: str) -> None:
    """A revision id with quotes or other punctuation, or longer than 32 characters, is refused
    naming the file."""
    migrations = tree(scenario)
    path = migrations / "core" / "versions" / "0002_create_teams.py"
    assert str(tree_error(migrations)) == (
        f"{path}: revision id {shown} must be 1-32 letters, digits or '_'; fix the "
        "`revision = ...` line")


def test_down_revision_expression_is_refused_readably(tree: Tree) -> None:
    """`down_revision = PARENT` (a name, not a literal) is refused with a message a person can
    act on, not the repr of an internal sentinel object."""
    migrations = tree("bad_down_revision_expression")
    message = str(tree_error(migrations))
    assert message.startswith(str(migrations / "core" / "versions" / "0002_create_teams.py"))
    assert "object at 0x" not in message
    assert "`down_revision` must be a literal string (or None / a tuple of strings)" in message


def test_revision_cycle_is_refused(tree: Tree) -> None:
    """Two revisions whose down_revisions point at each other are refused as a cycle, even when
    the tree's other revisions still leave one head."""
    migrations = tree("bad_revision_cycle")
    message = str(tree_error(migrations))
    assert "plugin 'core'" in message
    assert "cycle" in message
    assert "down_revision" in message


# -- dependencies ---------------------------------------------------------------------------


def test_dependency_order_is_deterministic(tree: Tree) -> None:
    """Plugins come after everything they depend on; independent ones are ordered by name, so
    every run (and every replica) gets the same order."""
    migrations = tree("disc_dependencies")
    orders = {tuple(p.name for p in only_dir(migrations)) for _ in range(3)}
    assert orders == {("mid", "zeta", "alpha", "beta")}


def test_with_dependencies_adds_what_a_plugin_needs(tree: Tree) -> None:
    """Selecting one plugin brings its dependencies (transitively), in dependency order."""
    found = only_dir(tree("disc_dependencies"))
    assert [p.name for p in with_dependencies(found, ["beta"])] == ["mid", "zeta", "alpha", "beta"]
    assert [p.name for p in with_dependencies(found, ["alpha"])] == ["zeta", "alpha"]
    assert [p.name for p in with_dependencies(found, ["mid"])] == ["mid"]


def test_depends_on_unknown_plugin_is_refused(tree: Tree) -> None:
    """depends_on naming a plugin that is not installed is a DependencyError naming both."""
    migrations = tree("bad_depends_unknown")
    with pytest.raises(DependencyError) as caught:
        only_dir(migrations)
    assert str(caught.value) == (
        f"plugin 'panels' depends on 'core', which is not installed (plugin.toml of "
        f"{migrations / 'panels'}); install it or remove it from depends_on")
    assert caught.value.plugins == ("panels", "core")
    assert caught.value.exit_code == 2


def test_dependency_cycle_names_its_members(tree: Tree) -> None:
    """A depends_on cycle is a DependencyError that spells the loop out with every member."""
    with pytest.raises(DependencyError) as caught:
        only_dir(tree("bad_dependency_cycle"))
    message = str(caught.value)
    match = re.fullmatch(r"dependency cycle between plugins: (.*); remove one depends_on entry "
                         r"to break it", message)
    assert match, message
    loop = match.group(1).split(" -> ")
    assert loop[0] == loop[-1]
    assert sorted(loop[:-1]) == ["alpha", "beta", "gamma"]
    assert sorted(caught.value.plugins) == ["alpha", "beta", "gamma"]


def test_self_dependency_is_refused(tree: Tree) -> None:
    """A plugin listing itself in depends_on is refused, naming its plugin.toml."""
    migrations = tree("bad_self_dependency")
    with pytest.raises(DependencyError) as caught:
        only_dir(migrations)
    assert str(caught.value) == (
        f"{migrations / 'core' / 'plugin.toml'}: plugin 'core' depends on itself; remove it "
        "from depends_on")


# -- entry points ---------------------------------------------------------------------------


def test_entry_point_plugin_is_discovered(tree: Tree, monkeypatch: pytest.MonkeyPatch) -> None:
    """An installed distribution's `migrator.plugins` entry point adds a plugin whose tree is
    the named package's directory, alongside the migrations directory's plugins."""
    site = tree("disc_entry_point")
    install_distribution(site)
    monkeypatch.syspath_prepend(str(site))
    found = discover(tree("disc_linear"))
    assert [p.name for p in found] == ["core", "extplug"]
    extplug = found[1]
    assert extplug.source == "entry point extplug = extplug_pkg"
    assert extplug.path == site / "extplug_pkg"
    assert (extplug.schema, extplug.head) == ("extplug", "e1")


def test_entry_point_plugins_alone_need_no_migrations_dir(
    tree: Tree, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """With entry-point plugins installed, a missing migrations directory is not an error."""
    site = tree("disc_entry_point")
    install_distribution(site)
    monkeypatch.syspath_prepend(str(site))
    assert [p.name for p in discover(tmp_path / "absent")] == ["extplug"]


def test_plugin_found_twice_names_both_places(
    tree: Tree, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A name found in the migrations directory and as an entry point is an error naming both."""
    site = tree("disc_entry_point")
    install_distribution(site)
    monkeypatch.syspath_prepend(str(site))
    migrations = tree("bad_found_twice")
    with pytest.raises(TreeError) as caught:
        discover(migrations)
    assert str(caught.value) == (
        f"plugin 'extplug' is found twice: {migrations / 'extplug'} and entry point extplug = "
        "extplug_pkg; remove or rename one of them")


def test_entry_point_to_missing_module_is_refused(
    tree: Tree, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An entry point naming a module that is not importable is a TreeError naming the entry."""
    site = tree("disc_entry_point")
    install_distribution(site, plugin="ghost", module="ghost_pkg_not_installed")
    monkeypatch.syspath_prepend(str(site))
    with pytest.raises(TreeError) as caught:
        discover(tree("disc_linear"))
    assert str(caught.value) == (
        "entry point ghost = ghost_pkg_not_installed: module not found; fix the package's "
        "entry point")


# -- hostile names --------------------------------------------------------------------------

RESERVED = {"migrator", "information_schema"}  # public: allowed for one plugin


def _acceptable(name: str) -> bool:
    return (re.fullmatch(r"[a-z][a-z0-9_]{0,47}", name) is not None and name not in RESERVED
            and not name.startswith("pg_"))


HOSTILE = st.one_of(
    st.text(max_size=60),
    st.from_regex(r"[a-z][a-z0-9_]{0,20}", fullmatch=True).map(lambda s: s + "\n"),
    st.from_regex(r"[a-z][a-z0-9_]{48,60}", fullmatch=True),
    st.from_regex(r"pg_[a-z0-9_]{0,20}", fullmatch=True),
    st.sampled_from([*sorted(RESERVED), "public", 'x"; DROP SCHEMA public CASCADE; --', "Core",
                     "caf\u00e9"]),
)


def _revision_tree(root: Path, directory: str) -> Path:
    versions = root / directory / "versions"
    versions.mkdir(parents=True)
    (versions / "0001_base.py").write_text('revision = "a1"\ndown_revision = None\n')
    return root / directory


@settings(max_examples=100, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(name=HOSTILE)
@example(name="core\n")
@example(name="pg_toast")
def test_hostile_names_are_always_tree_errors(name: str) -> None:
    """Whatever text arrives as a plugin name (directory or entry point) or as a schema in
    plugin.toml, anything outside the rule ends in a TreeError and never another exception."""
    if _acceptable(name):
        return
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        # as an entry point's name (an empty one means "use the directory's name")
        if name:
            with pytest.raises(TreeError):
                Plugin.from_directory(_revision_tree(root, "by_ep"), source="ep", name=name)
        # as a directory name, where the file system can hold it
        try:
            encodable = len(name.encode()) <= 255
        except UnicodeEncodeError:
            encodable = False
        if encodable and name not in ("", ".", "..") and "/" not in name and "\0" not in name:
            with pytest.raises(TreeError):
                discover(_revision_tree(root / "dirs", name).parent, entry_points=False)
        # as a schema in plugin.toml
        plugin_dir = _revision_tree(root, "core")
        (plugin_dir / "plugin.toml").write_text(f"schema = {json.dumps(name)}\n")
        with pytest.raises(TreeError):
            Plugin.from_directory(plugin_dir, source="test")
