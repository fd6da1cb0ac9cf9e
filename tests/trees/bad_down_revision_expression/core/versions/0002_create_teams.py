"""create teams"""

from alembic import op

# revision identifiers, used by Alembic.
PARENT = "a1"
revision = "b2"
down_revision = PARENT


def upgrade() -> None:
    op.execute("CREATE TABLE teams (id integer PRIMARY KEY)")


def downgrade() -> None:
    op.execute("DROP TABLE teams")
