"""commits, then builds an index concurrently (warehouse)

Revision ID: un000006
Revises: un000005
"""

from alembic import op

revision = "un000006"
down_revision = "un000005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE things ADD COLUMN flag boolean")
    op.get_bind().commit()
    with op.get_context().autocommit_block():
        op.create_index("ix_things_flag", "things", ["flag"], postgresql_concurrently=True)


def downgrade() -> None:
    pass
