"""change core's accounts from shop, and reference a plugin shop does not depend on

Revision ID: 5a0700000006
Revises: 5a0700000005
"""

import sqlalchemy as sa
from alembic import op

revision: str = "5a0700000006"
down_revision: str | None = "5a0700000005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("accounts", sa.Column("shop_note", sa.Text()), schema="core")
    op.create_table(
        "invoices_seen",
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column("invoice_id", sa.BigInteger(), sa.ForeignKey("billing.invoices.id")),
    )


def downgrade() -> None:
    op.drop_table("invoices_seen")
    op.drop_column("accounts", "shop_note", schema="core")
