"""The plan as data: `Plan.build(plugins, current)` from discovered trees, with no database.

`current` stands for what the version tables hold (schema → revisions), as the fast path reads it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from treebuilder import Rev, write_plugin

from migrator.discovery import Plugin, discover
from migrator.errors import UnknownRevision, UsageError
from migrator.plan import PENDING, UNKNOWN_REVISION, UP_TO_DATE, Plan, resolve_revision

Tree = Callable[[str], Path]


def plugins(tree: Tree, scenario: str) -> list[Plugin]:
    return discover(tree(scenario), entry_points=False)


def test_fresh_database_pends_every_revision_oldest_first(tree: Tree) -> None:
    """With nothing applied, every revision is pending, parents before children."""
    plan = Plan.build(plugins(tree, "disc_linear"), {})
    [core] = plan.plugins
    assert (core.state, core.current, core.target, core.pending) == (
        PENDING, (), "c3", ("a1", "b2", "c3"))
    assert core.current_label is None
    assert plan.pending == (core,)
    assert plan.unknown == ()


def test_pending_order_follows_revisions_not_file_names(tree: Tree) -> None:
    """Application order comes from down_revision links even when file names sort otherwise."""
    [core] = Plan.build(plugins(tree, "disc_unordered_files"), {}).plugins
    assert core.pending == ("a1", "b2", "c3")


def test_partly_applied_plugin_pends_the_rest(tree: Tree) -> None:
    """A plugin at a middle revision has only the later revisions pending."""
    [core] = Plan.build(plugins(tree, "disc_linear"), {"core": ("a1",)}).plugins
    assert (core.state, core.current_label, core.pending) == (PENDING, "a1", ("b2", "c3"))


def test_plugin_at_head_is_up_to_date(tree: Tree) -> None:
    """A plugin whose version table holds the head has nothing pending."""
    plan = Plan.build(plugins(tree, "disc_linear"), {"core": ("c3",)})
    [core] = plan.plugins
    assert (core.state, core.pending) == (UP_TO_DATE, ())
    assert plan.pending == ()


def test_merge_tree_pends_both_branches_before_the_merge(tree: Tree) -> None:
    """From the base of a merged tree, both branches are pending (by file name) and the merge
    revision comes last."""
    [core] = Plan.build(plugins(tree, "disc_merge"), {"core": ("a1",)}).plugins
    assert core.pending == ("b2", "c3", "d4")


def test_database_on_both_branch_tips_pends_only_the_merge(tree: Tree) -> None:
    """A version table holding both branch tips (two rows) needs only the merge revision."""
    [core] = Plan.build(plugins(tree, "disc_merge"), {"core": ("b2", "c3")}).plugins
    assert (core.state, core.current_label, core.pending) == (PENDING, "b2,c3", ("d4",))


def test_current_is_looked_up_by_schema(tree: Tree) -> None:
    """Revisions are read per schema: a plugin with its own schema is found under that schema,
    not under its name."""
    found = plugins(tree, "disc_plugin_toml")
    plan = Plan.build(found, {"core": ("a1",), "panel_data": ("p1",), "panels": ("zz",)})
    assert [(p.name, p.state) for p in plan.plugins] == [
        ("core", UP_TO_DATE), ("panels", UP_TO_DATE)]


def test_plugin_without_revisions_is_up_to_date(tree: Tree) -> None:
    """A plugin with an empty tree has nothing to apply and no target."""
    [core] = Plan.build(plugins(tree, "disc_empty"), {}).plugins
    assert (core.state, core.target, core.pending) == (UP_TO_DATE, None, ())


def test_unknown_revision_is_reported_and_refused(tree: Tree) -> None:
    """A version table holding a revision no file declares is `unknown_revision`; running is
    refused with the fix (restore the file or stamp)."""
    found = plugins(tree, "disc_linear")
    plan = Plan.build(found, {"core": ("f00d",)})
    [core] = plan.plugins
    assert (core.state, core.pending) == (UNKNOWN_REVISION, ())
    assert plan.unknown == (core,)
    assert plan.pending == ()
    with pytest.raises(UnknownRevision) as caught:
        plan.require_known_revisions()
    assert str(caught.value) == (
        f"plugin 'core': the database is at revision f00d, which is not in "
        f"{found[0].versions_dir}; restore the missing revision file or run: migrator stamp "
        "--plugin core <revision>")
    assert (caught.value.plugin, caught.value.revision) == ("core", "f00d")


def test_target_stops_at_that_revision(tree: Tree) -> None:
    """`--to` a middle revision pends only up to it, oldest first."""
    [core] = Plan.build(plugins(tree, "disc_linear"), {}, targets={"core": "b2"}).plugins
    assert (core.target, core.pending, core.state) == ("b2", ("a1", "b2"), PENDING)


def test_target_equal_to_current_is_up_to_date(tree: Tree) -> None:
    """`--to` the revision the database is already at is a no-op, not an error."""
    [core] = Plan.build(plugins(tree, "disc_linear"), {"core": ("b2",)},
                        targets={"core": "b2"}).plugins
    assert (core.state, core.pending) == (UP_TO_DATE, ())


def test_target_on_a_branch_pends_only_that_branch(tree: Tree) -> None:
    """`--to` one branch tip of a merged tree pends that branch alone."""
    [core] = Plan.build(plugins(tree, "disc_merge"), {}, targets={"core": "c3"}).plugins
    assert core.pending == ("a1", "c3")


def test_target_already_passed_points_at_downgrade(tree: Tree) -> None:
    """Upgrading `--to` a revision the database is already past is a usage error that says
    how to go back instead."""
    with pytest.raises(UsageError) as caught:
        Plan.build(plugins(tree, "disc_linear"), {"core": ("c3",)}, targets={"core": "a1"})
    assert str(caught.value) == (
        "plugin 'core' is already past revision a1 (at c3); to go back run: migrator downgrade "
        "--plugin core --to a1")
    assert caught.value.exit_code == 2


def test_the_unknown_revision_hint_shows_the_newest_ten_and_counts_the_rest(tmp_path: Path
                                                                           ) -> None:
    write_plugin(tmp_path, "long", [Rev(f"r{i:02}", f"r{i - 1:02}" if i else None)
                                    for i in range(14)])
    [long] = discover(tmp_path, entry_points=False)
    with pytest.raises(UnknownRevision) as caught:
        resolve_revision(long, "nope")
    assert ("known revisions: r04, r05, r06, r07, r08, r09, r10, r11, r12, r13 (and 4 older)"
            in str(caught.value))


def test_targets_apply_only_to_their_plugin(tree: Tree) -> None:
    """A target for one plugin leaves the others planned to their heads."""
    plan = Plan.build(plugins(tree, "disc_dependencies"), {}, targets={"alpha": "al1"})
    assert {p.name: p.target for p in plan.plugins} == {
        "mid": "m1", "zeta": "z1", "alpha": "al1", "beta": "be1"}


def test_plan_keeps_dependency_order(tree: Tree) -> None:
    """The plan lists plugins in the order discovery settled, dependencies first."""
    plan = Plan.build(plugins(tree, "disc_dependencies"), {"zeta": ("z1",)})
    assert [(p.name, p.state) for p in plan.plugins] == [
        ("mid", PENDING), ("zeta", UP_TO_DATE), ("alpha", PENDING), ("beta", PENDING)]
    assert [p.name for p in plan.pending] == ["mid", "alpha", "beta"]


@pytest.mark.parametrize(("text", "expected"), [("c3", "c3"), ("head", "c3"), ("a1", "a1")])
def test_resolve_revision_accepts_ids_and_head(tree: Tree, text: str, expected: str) -> None:
    """`--to` takes a revision id of the plugin's tree or `head`."""
    [core] = plugins(tree, "disc_linear")
    assert resolve_revision(core, text) == expected


def test_resolve_revision_accepts_a_unique_prefix_of_four_or_more(tree: Tree) -> None:
    """A unique prefix of at least four characters names a revision, as in Alembic; a shorter
    or shared prefix is refused."""
    [core] = plugins(tree, "disc_long_ids")
    assert resolve_revision(core, "3f2a") == "3f2a9c1b7d4e"
    assert resolve_revision(core, "3f2b00") == "3f2b00aa11cc"
    with pytest.raises(UnknownRevision, match="known revisions: 3f2a9c1b7d4e, 3f2b00aa11cc"):
        resolve_revision(core, "3f2")


def test_resolve_unknown_revision_lists_known_ones(tree: Tree) -> None:
    """An unknown `--to` names the plugin, its tree, the known revisions and where to look."""
    [core] = plugins(tree, "disc_linear")
    with pytest.raises(UnknownRevision) as caught:
        resolve_revision(core, "zz9")
    assert str(caught.value) == (
        f"revision 'zz9' is not in the tree of plugin 'core' ({core.versions_dir}); known "
        "revisions: a1, b2, c3; run: migrator history --plugin core")
    assert caught.value.exit_code == 2
