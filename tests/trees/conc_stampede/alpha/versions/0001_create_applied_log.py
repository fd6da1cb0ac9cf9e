"""create applied log

Revision ID: alpha_0001
Revises:
"""

from alembic import op

revision = "alpha_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE TABLE applied (revision text NOT NULL)")
    op.execute("INSERT INTO applied VALUES ('alpha_0001')")


def downgrade() -> None:
    op.execute("DROP TABLE applied")
