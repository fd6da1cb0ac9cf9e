"""create mid_items"""

from alembic import op

# revision identifiers, used by Alembic.
revision = "m1"
down_revision = None


def upgrade() -> None:
    op.execute("CREATE TABLE mid_items (id integer PRIMARY KEY)")


def downgrade() -> None:
    op.execute("DROP TABLE mid_items")
