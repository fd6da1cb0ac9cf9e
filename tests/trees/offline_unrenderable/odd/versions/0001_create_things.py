"""create things

Revision ID: un000001
Revises:
"""

from alembic import op

revision = "un000001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE TABLE things (id integer PRIMARY KEY, name text)")
    op.execute("INSERT INTO things SELECT g, 't' || g FROM generate_series(1, 10) g")


def downgrade() -> None:
    pass
