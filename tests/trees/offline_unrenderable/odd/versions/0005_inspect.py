"""introspects

Revision ID: un000005
Revises: un000004
"""

import sqlalchemy as sa
from alembic import op

revision = "un000005"
down_revision = "un000004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if "things" in sa.inspect(op.get_bind()).get_table_names():
        op.add_column("things", sa.Column("extra", sa.Text()))


def downgrade() -> None:
    pass
