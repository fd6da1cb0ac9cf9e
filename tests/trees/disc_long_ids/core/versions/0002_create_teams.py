"""create teams"""

from alembic import op

# revision identifiers, used by Alembic.
revision: str = "3f2b00aa11cc"
down_revision: str | None = '3f2a9c1b7d4e'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE TABLE teams (id integer PRIMARY KEY)")


def downgrade() -> None:
    op.execute("DROP TABLE teams")
