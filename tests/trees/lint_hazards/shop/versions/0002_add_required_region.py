"""add a required region to existing orders

Revision ID: 5a0700000002
Revises: 5a0700000001
"""

import sqlalchemy as sa
from alembic import op

revision: str = "5a0700000002"
down_revision: str | None = "5a0700000001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("orders", sa.Column("region", sa.Text(), nullable=False))


def downgrade() -> None:
    op.drop_column("orders", "region")
