"""backfill: count each row's updates in a1.n

Revision ID: inj_alpha_0003
Revises: inj_alpha_0002
"""

from migrator import backfill

revision = "inj_alpha_0003"
down_revision = "inj_alpha_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # n counts the updates each row got: exactly once means every n ends at 1, never 2.
    backfill("a1", set="n = n + 1", batch_size=25, pause=0.01)


def downgrade() -> None:
    pass
