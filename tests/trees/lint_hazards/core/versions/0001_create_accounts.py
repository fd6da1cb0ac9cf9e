"""create accounts

Revision ID: 11a700000001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision: str = "11a700000001"
down_revision: str | None = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column("email", sa.Text(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("accounts")
