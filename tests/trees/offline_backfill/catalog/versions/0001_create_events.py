"""create events, 40,000 rows, a CHECK with a percent sign

Revision ID: of000001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "of000001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("id", sa.BigInteger(), primary_key=True),
        sa.Column("code", sa.Text(), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("drug_name", sa.Text(), nullable=True),
        sa.CheckConstraint("code LIKE 'x%'", name="events_code_x"),
    )
    op.execute("INSERT INTO events (id, code, payload) SELECT g, 'x' || g, "
               "json_build_object('drug', 'drug ' || (g % 97)) FROM generate_series(1, 40000) g")


def downgrade() -> None:
    op.drop_table("events")
