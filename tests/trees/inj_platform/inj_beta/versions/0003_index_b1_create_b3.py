"""index b1.a_id, create b3

Revision ID: inj_beta_0003
Revises: inj_beta_0002
"""

import os

from alembic import op

revision = "inj_beta_0003"
down_revision = "inj_beta_0002"
branch_labels = None
depends_on = None
PAUSE = float(os.environ.get("INJ_SLEEP", "0.02"))


def upgrade() -> None:
    op.execute("CREATE INDEX b1_a_id ON b1 (a_id)")
    op.execute(f"SELECT pg_sleep({PAUSE})")
    op.execute("CREATE TABLE b3 (id integer PRIMARY KEY)")


def downgrade() -> None:
    op.execute("DROP TABLE b3")
    op.execute("DROP INDEX b1_a_id")
