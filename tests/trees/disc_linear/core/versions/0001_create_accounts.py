"""create accounts"""

from alembic import op

# revision identifiers, used by Alembic.
revision: str = "a1"
down_revision: str | None = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE TABLE accounts (id integer PRIMARY KEY)")


def downgrade() -> None:
    op.execute("DROP TABLE accounts")
