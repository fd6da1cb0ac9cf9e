"""create gamma_items"""

from alembic import op

# revision identifiers, used by Alembic.
revision = "ga1"
down_revision = None


def upgrade() -> None:
    op.execute("CREATE TABLE gamma_items (id integer PRIMARY KEY)")


def downgrade() -> None:
    op.execute("DROP TABLE gamma_items")
