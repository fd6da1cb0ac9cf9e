"""create products

Revision ID: c0ffee000001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision: str = "c0ffee000001"
down_revision: str | None = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "products",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.Text(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("products")
