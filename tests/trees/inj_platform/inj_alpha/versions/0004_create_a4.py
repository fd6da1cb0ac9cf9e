"""create a4

Revision ID: inj_alpha_0004
Revises: inj_alpha_0003
"""

import os

from alembic import op

revision = "inj_alpha_0004"
down_revision = "inj_alpha_0003"
branch_labels = None
depends_on = None
PAUSE = float(os.environ.get("INJ_SLEEP", "0.02"))


def upgrade() -> None:
    op.execute("CREATE TABLE a4 (id integer PRIMARY KEY)")
    op.execute(f"SELECT pg_sleep({PAUSE})")
    op.execute("INSERT INTO a4 VALUES (1), (2), (3)")


def downgrade() -> None:
    op.execute("DROP TABLE a4")
