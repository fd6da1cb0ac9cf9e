"""index results by experiment and producer, check producer names

Revision ID: 92060840afe5
Revises: fe76fc4f7a85
Create Date: 2026-11-23 05:34:00.000000

"""

from alembic import op

# revision identifiers, used by Alembic.
revision: str = "92060840afe5"
down_revision: str | None = "fe76fc4f7a85"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Consumers read "the results of producer P for experiment E"; experiment_id leads, so
    # this index also serves the foreign key and per-experiment reads.
    op.create_index(
        "ix_analysis_results_experiment_id_producer_plugin",
        "analysis_results",
        ["experiment_id", "producer_plugin"],
    )
    # producer_plugin must be a valid plugin name, the same rule migrator applies to trees.
    op.create_check_constraint(
        "ck_analysis_results_producer_plugin_name",
        "analysis_results",
        "producer_plugin ~ '^[a-z][a-z0-9_]{0,47}$'",
    )


def downgrade() -> None:
    op.drop_constraint(
        "ck_analysis_results_producer_plugin_name", "analysis_results", type_="check"
    )
    op.drop_index(
        "ix_analysis_results_experiment_id_producer_plugin", table_name="analysis_results"
    )
