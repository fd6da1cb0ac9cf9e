"""create accounts

Revision ID: core_0001
Revises:
"""

from alembic import op

revision = "core_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE TABLE accounts (id integer PRIMARY KEY, email text NOT NULL)")


def downgrade() -> None:
    op.execute("DROP TABLE accounts")
