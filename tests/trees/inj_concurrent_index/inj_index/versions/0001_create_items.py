"""create items

Revision ID: inj_index_0001
Revises:
"""

from alembic import op

revision = "inj_index_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE TABLE items (id integer PRIMARY KEY, code text NOT NULL)")
    op.execute("INSERT INTO items SELECT g, 'c' || g FROM generate_series(1, 100) AS g")


def downgrade() -> None:
    op.execute("DROP TABLE items")
