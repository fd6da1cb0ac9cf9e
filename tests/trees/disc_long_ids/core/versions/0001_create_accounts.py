"""create accounts"""

from alembic import op

# revision identifiers, used by Alembic.
revision: str = "3f2a9c1b7d4e"
down_revision: str | None = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE TABLE accounts (id integer PRIMARY KEY)")


def downgrade() -> None:
    op.execute("DROP TABLE accounts")
