"""create tags

Revision ID: tags_0001
Revises:
"""

from alembic import op

revision = "tags_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE TABLE tags (id integer PRIMARY KEY)")


def downgrade() -> None:
    op.execute("DROP TABLE tags")
