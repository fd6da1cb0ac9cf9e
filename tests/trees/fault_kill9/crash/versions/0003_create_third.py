"""create third

Revision ID: crash_0003
Revises: crash_0002
"""

from alembic import op

revision = "crash_0003"
down_revision = "crash_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE TABLE third (id integer PRIMARY KEY)")


def downgrade() -> None:
    op.execute("DROP TABLE third")
