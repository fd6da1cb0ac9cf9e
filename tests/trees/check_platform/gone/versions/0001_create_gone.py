"""create gone

Revision ID: gone_0001
Revises:
"""

from alembic import op

revision = "gone_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE TABLE gone (id integer PRIMARY KEY)")


def downgrade() -> None:
    op.execute("DROP TABLE gone")
