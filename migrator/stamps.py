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
