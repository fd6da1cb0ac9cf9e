"""run the test's statement

Revision ID: iso_intruder_0001
Revises:
"""

import os

from alembic import op

revision = "iso_intruder_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE TABLE loot (id integer)")
    # What a test makes this plugin, which depends on nothing, try against others.
    statement = os.environ.get("ROLES_TEST_STATEMENT_ISO_INTRUDER")
    if statement:
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TABLE loot")
