"""add note

Revision ID: gamma_0003
Revises: gamma_0002
"""

from alembic import op

revision = "gamma_0003"
down_revision = "gamma_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE applied ADD COLUMN note text")
    op.execute("INSERT INTO applied VALUES ('gamma_0003')")


def downgrade() -> None:
    op.execute("ALTER TABLE applied DROP COLUMN note")
