"""create items

Revision ID: bf_0001
Revises:
"""

from alembic import op

revision = "bf_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    # `counter` counts the updates each row received: the backfill must leave it at 1.
    op.execute("CREATE TABLE items (id bigint PRIMARY KEY, payload jsonb NOT NULL, "
               "filled text, counter integer NOT NULL DEFAULT 0)")


def downgrade() -> None:
    op.execute("DROP TABLE items")
