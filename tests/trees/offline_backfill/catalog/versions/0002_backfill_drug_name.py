"""backfill drug_name, with a parameter that needs quoting

Revision ID: of000002
Revises: of000001
"""

from migrator import backfill

revision = "of000002"
down_revision = "of000001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    backfill("events", set="drug_name = (payload->>'drug') || :suffix",
             where="drug_name IS NULL AND code LIKE 'x%'", params={"suffix": " 100% it's"},
             batch_size=3000)


def downgrade() -> None:
    pass
