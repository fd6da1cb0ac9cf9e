"""create core_items"""

from alembic import op

# revision identifiers, used by Alembic.
revision = "a1"
down_revision = None


def upgrade() -> None:
    op.execute("CREATE TABLE core_items (id integer PRIMARY KEY)")


def downgrade() -> None:
    op.execute("DROP TABLE core_items")
