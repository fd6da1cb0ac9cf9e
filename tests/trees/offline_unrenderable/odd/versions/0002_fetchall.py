"""reads rows with fetchall

Revision ID: un000002
Revises: un000001
"""

import sqlalchemy as sa
from alembic import op

revision = "un000002"
down_revision = "un000001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    rows = op.get_bind().execute(sa.text("SELECT id FROM things")).fetchall()
    for (id_,) in rows:
        op.execute(sa.text("UPDATE things SET name = upper(name) WHERE id = :id")
                   .bindparams(id=id_))


def downgrade() -> None:
    pass
