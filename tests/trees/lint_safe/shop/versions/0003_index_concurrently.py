"""index orders by customer, concurrently

Revision ID: 5afe00000003
Revises: 5afe00000002
"""

from alembic import op

revision: str = "5afe00000003"
down_revision: str | None = "5afe00000002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.get_context().autocommit_block():
        op.create_index("ix_orders_customer_id", "orders", ["customer_id"],
                        postgresql_concurrently=True, if_not_exists=True)


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.drop_index("ix_orders_customer_id", table_name="orders",
                      postgresql_concurrently=True, if_exists=True)
