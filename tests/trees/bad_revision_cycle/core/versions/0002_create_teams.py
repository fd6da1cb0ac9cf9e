"""create teams"""

from alembic import op

# revision identifiers, used by Alembic.
revision = "b2"
down_revision = 'c3'


def upgrade() -> None:
    op.execute("CREATE TABLE teams (id integer PRIMARY KEY)")


def downgrade() -> None:
    op.execute("DROP TABLE teams")
