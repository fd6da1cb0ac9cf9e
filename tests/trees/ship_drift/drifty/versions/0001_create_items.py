"""create items

Revision ID: d21f70000001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "d21f70000001"
down_revision = None


def upgrade() -> None:
    op.create_table("items", sa.Column("id", sa.Integer(), primary_key=True),
                    sa.Column("name", sa.Text(), nullable=False))


def downgrade() -> None:
    op.drop_table("items")
