"""create gone_things

Revision ID: 0e0e00000002
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision: str = "0e0e00000002"
down_revision: str | None = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("gone_things", sa.Column("id", sa.Integer(), primary_key=True))


def downgrade() -> None:
    op.drop_table("gone_things")
