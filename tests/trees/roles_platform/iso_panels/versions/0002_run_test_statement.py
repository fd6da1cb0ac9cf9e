"""run the test's statement

Revision ID: iso_panels_0002
Revises: iso_panels_0001
"""

import os

from alembic import op

revision = "iso_panels_0002"
down_revision = "iso_panels_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # What a test makes this plugin try against others (nothing when unset).
    statement = os.environ.get("ROLES_TEST_STATEMENT_ISO_PANELS")
    if statement:
        op.execute(statement)


def downgrade() -> None:
    pass
