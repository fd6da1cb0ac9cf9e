"""create things

Revision ID: 1eaf00000001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "1eaf00000001"
down_revision = None


def upgrade() -> None:
    op.create_table("things", sa.Column("id", sa.Integer(), primary_key=True),
                    sa.Column("name", sa.Text(), nullable=False))


def downgrade() -> None:
    op.drop_table("things")
