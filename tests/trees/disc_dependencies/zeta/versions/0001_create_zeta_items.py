"""create zeta_items"""

from alembic import op

# revision identifiers, used by Alembic.
revision = "z1"
down_revision = None


def upgrade() -> None:
    op.execute("CREATE TABLE zeta_items (id integer PRIMARY KEY)")


def downgrade() -> None:
    op.execute("DROP TABLE zeta_items")
