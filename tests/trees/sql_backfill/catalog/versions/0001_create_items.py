"""create items

Revision ID: 5b1f00000001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision: str = "5b1f00000001"
down_revision: str | None = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "items",
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("name_upper", sa.Text(), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("items")
