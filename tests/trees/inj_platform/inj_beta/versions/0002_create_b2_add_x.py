"""create b2, add b1.x

Revision ID: inj_beta_0002
Revises: inj_beta_0001
"""

import os

from alembic import op

revision = "inj_beta_0002"
down_revision = "inj_beta_0001"
branch_labels = None
depends_on = None
PAUSE = float(os.environ.get("INJ_SLEEP", "0.02"))


def upgrade() -> None:
    op.execute("CREATE TABLE b2 (id integer PRIMARY KEY)")
    op.execute(f"SELECT pg_sleep({PAUSE})")
    op.execute("ALTER TABLE b1 ADD COLUMN x integer")


def downgrade() -> None:
    op.execute("ALTER TABLE b1 DROP COLUMN x")
    op.execute("DROP TABLE b2")
