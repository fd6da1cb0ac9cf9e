"""create gadgets"""

from alembic import op

# revision identifiers, used by Alembic.
revision = "e1"
down_revision = None


def upgrade() -> None:
    op.execute("CREATE TABLE gadgets (id integer PRIMARY KEY)")


def downgrade() -> None:
    op.execute("DROP TABLE gadgets")
