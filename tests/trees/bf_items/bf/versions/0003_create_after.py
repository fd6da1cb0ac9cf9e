"""create after

Revision ID: bf_0003
Revises: bf_0002
"""

from alembic import op

revision = "bf_0003"
down_revision = "bf_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE TABLE after_backfill (id integer PRIMARY KEY)")


def downgrade() -> None:
    op.execute("DROP TABLE after_backfill")
