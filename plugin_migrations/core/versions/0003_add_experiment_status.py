"""add experiment status

Revision ID: ddb4c3d7593d
Revises: 582d2af23f76
Create Date: 2026-11-23 05:29:00.000000

"""

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision: str = "ddb4c3d7593d"
down_revision: str | None = "582d2af23f76"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A constant server default makes this a catalog-only change (PostgreSQL 11+): existing
    # rows read 'active' without the table being rewritten.
    op.add_column(
        "experiments",
        sa.Column("status", sa.Text(), server_default=sa.text("'active'"), nullable=False),
    )


def downgrade() -> None:
    op.drop_column("experiments", "status")
