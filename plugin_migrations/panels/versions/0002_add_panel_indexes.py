"""add panel indexes

Revision ID: 7c3aa4ddbdb2
Revises: a304542a37f6
Create Date: 2026-11-23 05:31:00.000000

"""

from alembic import op

# revision identifiers, used by Alembic.
revision: str = "7c3aa4ddbdb2"
down_revision: str | None = "a304542a37f6"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The indexes the plugin's repository queries need: panels of an experiment, recent
    # panels, an experiment's panels newest first, one name per experiment, and drug
    # containment (jsonb_path_ops: smaller than the default opclass, and supports @>).
    op.create_index("ix_panels_experiment_id", "panels", ["experiment_id"])
    op.create_index("ix_panels_created_at", "panels", ["created_at"])
    op.create_index("ix_panels_experiment_id_created_at", "panels", ["experiment_id", "created_at"])
    op.create_index(
        "uq_panels_experiment_id_name", "panels", ["experiment_id", "name"], unique=True
    )
    op.create_index(
        "ix_panels_drugs",
        "panels",
        ["drugs"],
        postgresql_using="gin",
        postgresql_ops={"drugs": "jsonb_path_ops"},
    )


def downgrade() -> None:
    op.drop_index("ix_panels_drugs", table_name="panels")
    op.drop_index("uq_panels_experiment_id_name", table_name="panels")
    op.drop_index("ix_panels_experiment_id_created_at", table_name="panels")
    op.drop_index("ix_panels_created_at", table_name="panels")
    op.drop_index("ix_panels_experiment_id", table_name="panels")
