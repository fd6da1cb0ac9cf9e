"""slow create second

Revision ID: stoppable_0002
Revises: stoppable_0001
"""

import os

from alembic import op

revision = "stoppable_0002"
down_revision = "stoppable_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE TABLE second (id integer PRIMARY KEY)")
    # The test shortens the sleep for the rerun.
    seconds = float(os.environ.get("TEST_REVISION_SLEEP", "1.5"))
    op.execute(f"SELECT pg_sleep({seconds})")


def downgrade() -> None:
    op.execute("DROP TABLE second")
