"""reference core's accounts, validated at once

Revision ID: 5a0700000004
Revises: 5a0700000003
"""

from alembic import op

revision: str = "5a0700000004"
down_revision: str | None = "5a0700000003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # core is a dependency, so the reference itself is allowed; its validation is the hazard.
    op.create_foreign_key("fk_orders_account_id", "orders", "accounts", ["account_id"], ["id"],
                          referent_schema="core")


def downgrade() -> None:
    op.drop_constraint("fk_orders_account_id", "orders", type_="foreignkey")
