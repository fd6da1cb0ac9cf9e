"""add item notes

Revision ID: 5a0e1f3c2b03
Revises: 5a0e1f3c2b02
"""

import sqlalchemy as sa
from alembic import op

revision: str = "5a0e1f3c2b03"
down_revision: str | None = "5a0e1f3c2b02"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("items", sa.Column("notes", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("items", "notes")
