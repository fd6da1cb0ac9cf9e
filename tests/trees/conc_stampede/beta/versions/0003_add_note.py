"""add note

Revision ID: beta_0003
Revises: beta_0002
"""

from alembic import op

revision = "beta_0003"
down_revision = "beta_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE applied ADD COLUMN note text")
    op.execute("INSERT INTO applied VALUES ('beta_0003')")


def downgrade() -> None:
    op.execute("ALTER TABLE applied DROP COLUMN note")
