"""backfill values, walking a composite key

Revision ID: pairs_0002
Revises: pairs_0001
"""

from migrator import backfill

revision = "pairs_0002"
down_revision = "pairs_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    backfill(
        "readings",
        set="value = (raw->>'od')::numeric / :scale, counter = counter + 1",
        where="raw ? 'od'",
        params={"scale": 1000},
        key=("plate", "well"),
        batch_size=50,
        target_batch_time=0,  # fixed batches: the test counts them
    )


def downgrade() -> None:
    pass
