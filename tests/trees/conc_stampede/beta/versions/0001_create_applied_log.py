"""create applied log

Revision ID: beta_0001
Revises:
"""

from alembic import op

revision = "beta_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE TABLE applied (revision text NOT NULL)")
    op.execute("INSERT INTO applied VALUES ('beta_0001')")


def downgrade() -> None:
    op.execute("DROP TABLE applied")
