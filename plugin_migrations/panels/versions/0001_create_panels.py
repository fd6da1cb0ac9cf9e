"""create panels

Revision ID: a304542a37f6
Revises:
Create Date: 2026-11-23 05:30:00.000000

"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision: str = "a304542a37f6"
down_revision: str | None = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "panels",
        sa.Column(
            "id",
            postgresql.UUID(as_uuid=True),
            server_default=sa.text("gen_random_uuid()"),
            nullable=False,
        ),
        sa.Column("experiment_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        # A list of drug objects, e.g. [{"name": "cisplatin", "dose_um": 10}], queried with
        # JSONB containment (drugs @> '[{"name": "cisplatin"}]').
        sa.Column(
            "drugs",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'[]'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_panels"),
        # core's table lives in another schema, so it is named explicitly (search_path holds
        # only this plugin's schema and public while these revisions run).
        sa.ForeignKeyConstraint(
            ["experiment_id"],
            ["core.experiments.id"],
            name="fk_panels_experiment_id_experiments",
        ),
    )


def downgrade() -> None:
    op.drop_table("panels")
