"""add a nullable note and a status with a constant default

Revision ID: 5afe00000002
Revises: 5afe00000001
"""

import sqlalchemy as sa
from alembic import op

revision: str = "5afe00000002"
down_revision: str | None = "5afe00000001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("orders", sa.Column("note", sa.Text(), nullable=True))
    # A constant default: a catalog-only change, no rewrite, existing rows read 'new'.
    op.add_column("orders", sa.Column("status", sa.Text(), nullable=False,
                                      server_default=sa.text("'new'")))


def downgrade() -> None:
    op.drop_column("orders", "status")
    op.drop_column("orders", "note")
