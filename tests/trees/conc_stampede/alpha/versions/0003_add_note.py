"""add note

Revision ID: alpha_0003
Revises: alpha_0002
"""

from alembic import op

revision = "alpha_0003"
down_revision = "alpha_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE applied ADD COLUMN note text")
    op.execute("INSERT INTO applied VALUES ('alpha_0003')")


def downgrade() -> None:
    op.execute("ALTER TABLE applied DROP COLUMN note")
