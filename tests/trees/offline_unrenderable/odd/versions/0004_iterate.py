"""iterates rows

Revision ID: un000004
Revises: un000003
"""

import sqlalchemy as sa
from alembic import op

revision = "un000004"
down_revision = "un000003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for row in op.get_bind().execute(sa.text("SELECT id FROM things")):
        op.execute(sa.text("DELETE FROM things WHERE id = :id").bindparams(id=row.id))


def downgrade() -> None:
    pass
