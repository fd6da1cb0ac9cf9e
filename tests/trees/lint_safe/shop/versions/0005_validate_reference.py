"""validate the reference, in a transaction of its own

Revision ID: 5afe00000005
Revises: 5afe00000004
"""

from alembic import op

revision: str = "5afe00000005"
down_revision: str | None = "5afe00000004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # VALIDATE takes SHARE UPDATE EXCLUSIVE: reads and writes go on while it scans.
    op.execute("ALTER TABLE orders VALIDATE CONSTRAINT fk_orders_customer_id")


def downgrade() -> None:
    pass
