"""create analysis results

Revision ID: fe76fc4f7a85
Revises:
Create Date: 2026-11-23 05:33:00.000000

"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision: str = "fe76fc4f7a85"
down_revision: str | None = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "analysis_results",
        sa.Column(
            "id",
            postgresql.UUID(as_uuid=True),
            server_default=sa.text("gen_random_uuid()"),
            nullable=False,
        ),
        # The plugin that wrote the result; consumers read by experiment and producer.
        sa.Column("producer_plugin", sa.Text(), nullable=False),
        sa.Column("experiment_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("kind", sa.Text(), nullable=True),
        sa.Column("payload", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name="pk_analysis_results"),
        # Cross-schema reference: core's table is named with its schema.
        sa.ForeignKeyConstraint(
            ["experiment_id"],
            ["core.experiments.id"],
            name="fk_analysis_results_experiment_id_experiments",
        ),
    )


def downgrade() -> None:
    op.drop_table("analysis_results")
