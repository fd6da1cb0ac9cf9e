"""create leftovers, then fail on a missing table

Revision ID: 5a0e1f3c2b02
Revises: 5a0e1f3c2b01

The INSERT names a table that does not exist, so PostgreSQL rejects the revision after its
CREATE TABLE ran: nothing of it may remain. The test fixes the file by naming `items`.
"""

import sqlalchemy as sa
from alembic import op

revision: str = "5a0e1f3c2b02"
down_revision: str | None = "5a0e1f3c2b01"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("leftovers", sa.Column("id", sa.Integer(), primary_key=True))
    op.execute("INSERT INTO no_such_table VALUES (1)")


def downgrade() -> None:
    op.drop_table("leftovers")
