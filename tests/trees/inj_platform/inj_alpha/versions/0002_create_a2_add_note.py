"""create a2, add a1.note

Revision ID: inj_alpha_0002
Revises: inj_alpha_0001
"""

import os

from alembic import op

revision = "inj_alpha_0002"
down_revision = "inj_alpha_0001"
branch_labels = None
depends_on = None
PAUSE = float(os.environ.get("INJ_SLEEP", "0.02"))


def upgrade() -> None:
    op.execute("CREATE TABLE a2 (id integer PRIMARY KEY)")
    op.execute(f"SELECT pg_sleep({PAUSE})")
    op.execute("ALTER TABLE a1 ADD COLUMN note text")


def downgrade() -> None:
    op.execute("ALTER TABLE a1 DROP COLUMN note")
    op.execute("DROP TABLE a2")
