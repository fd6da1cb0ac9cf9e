"""make the amount a decimal

Revision ID: 5a0700000005
Revises: 5a0700000004
"""

import sqlalchemy as sa
from alembic import op

revision: str = "5a0700000005"
down_revision: str | None = "5a0700000004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.alter_column("orders", "amount", type_=sa.Numeric(12, 2), existing_type=sa.BigInteger())


def downgrade() -> None:
    op.alter_column("orders", "amount", type_=sa.BigInteger(), existing_type=sa.Numeric(12, 2))
