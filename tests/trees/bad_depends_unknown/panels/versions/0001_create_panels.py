"""create panels"""

from alembic import op

# revision identifiers, used by Alembic.
revision = "p1"
down_revision = None


def upgrade() -> None:
    op.execute("CREATE TABLE panels (id integer PRIMARY KEY)")


def downgrade() -> None:
    op.execute("DROP TABLE panels")
