"""slow create second

Revision ID: crash_0002
Revises: crash_0001
"""

import os

from alembic import op

revision = "crash_0002"
down_revision = "crash_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE TABLE second (id integer PRIMARY KEY)")
    # The test shortens the sleep for the rerun.
    seconds = float(os.environ.get("TEST_REVISION_SLEEP", "5"))
    op.execute(f"SELECT pg_sleep({seconds})")


def downgrade() -> None:
    op.execute("DROP TABLE second")
