"""create items

Revision ID: 5a0e1f3c2b01
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision: str = "5a0e1f3c2b01"
down_revision: str | None = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("items", sa.Column("id", sa.Integer(), primary_key=True))


def downgrade() -> None:
    op.drop_table("items")
