"""create accounts"""

from alembic import op

# revision identifiers, used by Alembic.
revision = "a1"
down_revision = None

raise RuntimeError("this revision module must not be imported by discovery")


def upgrade() -> None:
    op.execute("CREATE TABLE accounts (id integer PRIMARY KEY)")


def downgrade() -> None:
    op.execute("DROP TABLE accounts")
