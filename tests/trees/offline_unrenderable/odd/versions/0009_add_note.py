"""renders as usual

Revision ID: un000009
Revises: un000008
"""

import sqlalchemy as sa
from alembic import op

revision = "un000009"
down_revision = "un000008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("things", sa.Column("note", sa.Text()))


def downgrade() -> None:
    pass
