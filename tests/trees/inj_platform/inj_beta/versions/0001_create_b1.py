"""create b1 referring to a1

Revision ID: inj_beta_0001
Revises:
"""

import os

from alembic import op

revision = "inj_beta_0001"
down_revision = None
branch_labels = None
depends_on = None
PAUSE = float(os.environ.get("INJ_SLEEP", "0.02"))


def upgrade() -> None:
    op.execute("CREATE TABLE b1 (id integer PRIMARY KEY, "
               "a_id integer NOT NULL REFERENCES inj_alpha.a1 (id))")
    op.execute(f"SELECT pg_sleep({PAUSE})")
    op.execute("INSERT INTO b1 SELECT id, id FROM inj_alpha.a1 WHERE id <= 50")


def downgrade() -> None:
    op.execute("DROP TABLE b1")
