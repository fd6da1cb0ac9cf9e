"""create third

Revision ID: severed_0003
Revises: severed_0002
"""

from alembic import op

revision = "severed_0003"
down_revision = "severed_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE TABLE third (id integer PRIMARY KEY)")


def downgrade() -> None:
    op.execute("DROP TABLE third")
