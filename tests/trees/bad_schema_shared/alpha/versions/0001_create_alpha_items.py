"""create alpha_items"""

from alembic import op

# revision identifiers, used by Alembic.
revision = "al1"
down_revision = None


def upgrade() -> None:
    op.execute("CREATE TABLE alpha_items (id integer PRIMARY KEY)")


def downgrade() -> None:
    op.execute("DROP TABLE alpha_items")
