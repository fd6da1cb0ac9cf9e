"""an opt-out without a reason silences nothing

Revision ID: 5a0700000008
Revises: 5a0700000007
"""

from alembic import op

revision: str = "5a0700000008"
down_revision: str | None = "5a0700000007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # migrator-lint: ignore require-concurrent-index-creation
    op.create_index("ix_orders_amount", "orders", ["amount"])


def downgrade() -> None:
    op.drop_index("ix_orders_amount", table_name="orders")
