"""create beta_items"""

from alembic import op

# revision identifiers, used by Alembic.
revision = "be1"
down_revision = None


def upgrade() -> None:
    op.execute("CREATE TABLE beta_items (id integer PRIMARY KEY)")


def downgrade() -> None:
    op.execute("DROP TABLE beta_items")
