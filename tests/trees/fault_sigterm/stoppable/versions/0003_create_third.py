"""create third

Revision ID: stoppable_0003
Revises: stoppable_0002
"""

from alembic import op

revision = "stoppable_0003"
down_revision = "stoppable_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE TABLE third (id integer PRIMARY KEY)")


def downgrade() -> None:
    op.execute("DROP TABLE third")
