"""add a column and backfill it in the same revision (refused)

Revision ID: mixed_0002
Revises: mixed_0001
"""

import sqlalchemy as sa
from alembic import op

from migrator import backfill

revision = "mixed_0002"
down_revision = "mixed_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("items", sa.Column("name", sa.Text()))
    backfill("items", set="name = payload->>'name'")


def downgrade() -> None:
    op.drop_column("items", "name")
