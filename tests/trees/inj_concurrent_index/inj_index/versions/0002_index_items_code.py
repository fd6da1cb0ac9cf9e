"""index items.code concurrently

Revision ID: inj_index_0002
Revises: inj_index_0001
"""

from alembic import op

revision = "inj_index_0002"
down_revision = "inj_index_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Safe to rerun as far as IF NOT EXISTS goes: a build cut short leaves an INVALID index of
    # this name, which the rerun then skips (`migrator check` reports it).
    with op.get_context().autocommit_block():
        op.create_index("ix_items_code", "items", ["code"], postgresql_concurrently=True,
                        if_not_exists=True)


def downgrade() -> None:
    op.drop_index("ix_items_code", "items")
