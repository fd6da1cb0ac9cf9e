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
    # Built CONCURRENTLY, so writes to panels go on while they build; that cannot run in a
    # transaction, hence the autocommit block, and IF NOT EXISTS makes a rerun after a crash
    # skip the indexes already built.
    with op.get_context().autocommit_block():
        op.create_index("ix_panels_experiment_id", "panels", ["experiment_id"],
                        postgresql_concurrently=True, if_not_exists=True)
        op.create_index("ix_panels_created_at", "panels", ["created_at"],
                        postgresql_concurrently=True, if_not_exists=True)
        op.create_index("ix_panels_experiment_id_created_at", "panels",
                        ["experiment_id", "created_at"],
                        postgresql_concurrently=True, if_not_exists=True)
        op.create_index("uq_panels_experiment_id_name", "panels", ["experiment_id", "name"],
                        unique=True, postgresql_concurrently=True, if_not_exists=True)
        op.create_index(
            "ix_panels_drugs",
            "panels",
            ["drugs"],
            postgresql_using="gin",
            postgresql_ops={"drugs": "jsonb_path_ops"},
            postgresql_concurrently=True,
            if_not_exists=True,
        )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        for name in ("ix_panels_drugs", "uq_panels_experiment_id_name",
                     "ix_panels_experiment_id_created_at", "ix_panels_created_at",
                     "ix_panels_experiment_id"):
            op.drop_index(name, table_name="panels", postgresql_concurrently=True,
                          if_exists=True)
