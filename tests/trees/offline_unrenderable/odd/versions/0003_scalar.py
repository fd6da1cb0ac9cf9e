"""reads a scalar

Revision ID: un000003
Revises: un000002
"""

import sqlalchemy as sa
from alembic import op

revision = "un000003"
down_revision = "un000002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    count = op.get_bind().execute(sa.text("SELECT count(*) FROM things")).scalar()
    op.execute(f"COMMENT ON TABLE things IS '{count} things'")


def downgrade() -> None:
    pass
