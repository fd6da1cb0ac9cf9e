"""create host_items"""

from alembic import op

# revision identifiers, used by Alembic.
revision = "a1"
down_revision = None


def upgrade() -> None:
    op.execute("CREATE TABLE host_items (id integer PRIMARY KEY)")


def downgrade() -> None:
    op.execute("DROP TABLE host_items")
