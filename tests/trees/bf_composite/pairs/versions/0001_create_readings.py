"""create readings

Revision ID: pairs_0001
Revises:
"""

from alembic import op

revision = "pairs_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A composite key whose second column restarts for every plate: walking (plate, well) in
    # order crosses plate boundaries inside batches. Plate names sort as text ('P10' < 'P2').
    op.execute("CREATE TABLE readings (plate text NOT NULL, well integer NOT NULL, "
               "raw jsonb NOT NULL, value numeric, counter integer NOT NULL DEFAULT 0, "
               "PRIMARY KEY (plate, well))")
    op.execute("INSERT INTO readings (plate, well, raw) SELECT 'P' || p, w, "
               "jsonb_build_object('od', p * 1000 + w) FROM generate_series(1, 12) AS p, "
               "generate_series(1, 96) AS w")


def downgrade() -> None:
    op.execute("DROP TABLE readings")
