"""add note

Revision ID: locked_0002
Revises: locked_0001
"""

from alembic import op

revision = "locked_0002"
down_revision = "locked_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # ADD COLUMN needs ACCESS EXCLUSIVE: any open reader of items blocks it.
    op.execute("ALTER TABLE items ADD COLUMN note text")


def downgrade() -> None:
    op.execute("ALTER TABLE items DROP COLUMN note")
