"""A version stamp decided by Alembic, issued by migrator: for a step that moves one head,
the one statement on the plugin's version table (so it can share a round trip with the
revision's history row) and the heads it leaves; merges and branch points are left to
Alembic's HeadMaintainer (`migrator.steps`)."""

from __future__ import annotations

from typing import Any

from psycopg import sql


def statement(step: Any, heads: set[str], table: sql.Identifier
              ) -> tuple[sql.Composed, tuple[str, ...]] | None:
    """The statement and its parameters, or None for a merge or an unmerge."""
    if step.should_delete_branch(heads):
        return (sql.SQL("DELETE FROM {} WHERE version_num = %s").format(table),
                (step.delete_version_num,))
    if step.should_create_branch(heads):
        return (sql.SQL("INSERT INTO {} (version_num) VALUES (%s)").format(table),
                (step.insert_version_num,))
    if step.should_merge_branches(heads) or step.should_unmerge_branches(heads):
        return None
    from_, to_ = step.update_version_num(heads)
    return (sql.SQL("UPDATE {} SET version_num = %s WHERE version_num = %s").format(table),
            (to_, from_))


def move_heads(step: Any, heads: set[str]) -> None:
    """`heads` after a one-head step, as Alembic's HeadMaintainer would leave them."""
    if step.should_delete_branch(heads):
        heads.discard(step.delete_version_num)
    elif step.should_create_branch(heads):
        heads.add(step.insert_version_num)
    else:
        from_, to_ = step.update_version_num(heads)
        heads.discard(from_)
        heads.add(to_)


def in_declared_order(step: Any) -> Any:
    """`step` with Alembic's merge and unmerge bookkeeping in a fixed order.

    For a merge Alembic picks which parent row to UPDATE and which to DELETE (for an unmerge,
    which rows to INSERT) through a `set` when another branch is still open, so the order
    followed the interpreter's string hashing: `--sql` differed between runs, and online a
    different row was kept. The rows are Alembic's choice; only their order is fixed here, to
    the order the revision declares them (what Alembic itself uses when no other branch is
    open)."""
    if not hasattr(step, "merge_branch_idents"):
        return step  # a stamp step: no merge bookkeeping
    merge, unmerge = step.merge_branch_idents, step.unmerge_branch_idents

    def merge_branch_idents(heads: set[str]) -> tuple[list[str], str, str]:
        delete, update_from, update_to = merge(heads)
        chosen = _ordered(step.from_revisions, {*delete, update_from})
        return chosen[:-1], chosen[-1], update_to

    def unmerge_branch_idents(heads: set[str]) -> tuple[str, str, tuple[str, ...]]:
        update_from, update_to, insert = unmerge(heads)
        chosen = _ordered(step.to_revisions, {*insert, update_to})
        return update_from, chosen[-1], tuple(chosen[:-1])

    step.merge_branch_idents = merge_branch_idents
    step.unmerge_branch_idents = unmerge_branch_idents
    return step


def _ordered(declared: tuple[str, ...], chosen: set[str]) -> list[str]:
    return [revision for revision in declared if revision in chosen]
