"""create members"""

from alembic import op

# revision identifiers, used by Alembic.
revision: str = "c3"
down_revision: str | None = 'b2'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE TABLE members (id integer PRIMARY KEY)")


def downgrade() -> None:
    op.execute("DROP TABLE members")
