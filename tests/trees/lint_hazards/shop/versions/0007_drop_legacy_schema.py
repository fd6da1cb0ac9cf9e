"""drop the legacy schema

Revision ID: 5a0700000007
Revises: 5a0700000006
"""

from alembic import op

revision: str = "5a0700000007"
down_revision: str | None = "5a0700000006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("DROP SCHEMA IF EXISTS legacy CASCADE")


def downgrade() -> None:
    pass
