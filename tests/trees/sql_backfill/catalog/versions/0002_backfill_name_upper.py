"""backfill name_upper

Revision ID: 5b1f00000002
Revises: 5b1f00000001
"""

from migrator import backfill

revision: str = "5b1f00000002"
down_revision: str | None = "5b1f00000001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    backfill("items", set="name_upper = upper(name)", where="name_upper IS NULL",
             batch_size=500)


def downgrade() -> None:
    pass
