"""create orders

Revision ID: 5a0700000001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision: str = "5a0700000001"
down_revision: str | None = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Created, indexed and constrained in one revision: nothing to lock yet, nothing flagged.
    op.create_table(
        "orders",
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_orders_account_id", "orders", ["account_id"])


def downgrade() -> None:
    op.drop_table("orders")
