"""backfill lower-case emails

Revision ID: iso_core_0002
Revises: iso_core_0001
"""

from migrator import backfill

revision = "iso_core_0002"
down_revision = "iso_core_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Runs under the plugin's role too, checkpointing in migrator.backfill_progress.
    backfill("accounts", set="email = lower(email)", where="email <> lower(email)",
             batch_size=15)


def downgrade() -> None:
    pass
