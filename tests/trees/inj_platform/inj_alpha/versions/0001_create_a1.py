"""create a1

Revision ID: inj_alpha_0001
Revises:
"""

import os

from alembic import op

revision = "inj_alpha_0001"
down_revision = None
branch_labels = None
depends_on = None
PAUSE = float(os.environ.get("INJ_SLEEP", "0.02"))  # widens the windows faults land in


def upgrade() -> None:
    op.execute("CREATE TABLE a1 (id integer PRIMARY KEY, n integer NOT NULL DEFAULT 0)")
    op.execute(f"SELECT pg_sleep({PAUSE})")
    op.execute("INSERT INTO a1 (id) SELECT g FROM generate_series(1, 300) AS g")


def downgrade() -> None:
    op.execute("DROP TABLE a1")
