"""reference customers, NOT VALID (no scan under the lock)

Revision ID: 5afe00000004
Revises: 5afe00000003
"""

from alembic import op

revision: str = "5afe00000004"
down_revision: str | None = "5afe00000003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_foreign_key("fk_orders_customer_id", "orders", "customers", ["customer_id"],
                          ["id"], postgresql_not_valid=True)


def downgrade() -> None:
    op.drop_constraint("fk_orders_customer_id", "orders", type_="foreignkey")
