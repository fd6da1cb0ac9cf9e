"""create projects"""

from alembic import op

# revision identifiers, used by Alembic.
revision = "c3"
down_revision = 'b2'


def upgrade() -> None:
    op.execute("CREATE TABLE projects (id integer PRIMARY KEY)")


def downgrade() -> None:
    op.execute("DROP TABLE projects")
