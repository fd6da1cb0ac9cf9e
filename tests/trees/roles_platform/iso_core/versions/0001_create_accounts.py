"""create accounts

Revision ID: iso_core_0001
Revises:
"""

from alembic import op

revision = "iso_core_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE TABLE accounts (id integer PRIMARY KEY, email text NOT NULL)")
    op.execute("INSERT INTO accounts SELECT n, 'USER' || n || '@EXAMPLE.COM' "
               "FROM generate_series(1, 40) AS n")
    # Which role the revision ran as, for the test to read.
    op.execute("CREATE TABLE ran_as AS SELECT current_user::text AS role_name")


def downgrade() -> None:
    op.execute("DROP TABLE ran_as")
    op.execute("DROP TABLE accounts")
