"""record the schemas on search_path while the revision runs

Revision ID: 5ea4c4000001
Revises:
"""

from alembic import op

revision: str = "5ea4c4000001"
down_revision: str | None = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    # No schema named: the table must land in the plugin's schema.
    op.execute("CREATE TABLE seen (schemas text[] NOT NULL)")
    op.execute("INSERT INTO seen SELECT current_schemas(false)")


def downgrade() -> None:
    op.execute("DROP TABLE seen")
