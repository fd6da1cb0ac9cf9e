"""add panel notes

Revision ID: f6f7c7c2d5c1
Revises: 7c3aa4ddbdb2
Create Date: 2026-11-23 05:32:00.000000

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "f6f7c7c2d5c1"
down_revision: str | None = "7c3aa4ddbdb2"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("panels", sa.Column("notes", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("panels", "notes")
