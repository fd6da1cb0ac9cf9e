"""create panels

Revision ID: iso_panels_0001
Revises:
"""

from alembic import op

revision = "iso_panels_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A foreign key into the dependency, and a read of it.
    op.execute("CREATE TABLE panels (id integer PRIMARY KEY, "
               "account_id integer NOT NULL REFERENCES iso_core.accounts (id))")
    op.execute("INSERT INTO panels SELECT id, id FROM iso_core.accounts WHERE id <= 3")


def downgrade() -> None:
    op.execute("DROP TABLE panels")
