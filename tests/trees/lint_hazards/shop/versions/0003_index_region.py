"""index orders by region, in the transaction

Revision ID: 5a0700000003
Revises: 5a0700000002
"""

from alembic import op

revision: str = "5a0700000003"
down_revision: str | None = "5a0700000002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_orders_region", "orders", ["region"])


def downgrade() -> None:
    op.drop_index("ix_orders_region", table_name="orders")
