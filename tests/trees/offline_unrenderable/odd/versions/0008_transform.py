"""a Python backfill

Revision ID: un000008
Revises: un000007
"""

from migrator import backfill

revision = "un000008"
down_revision = "un000007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    backfill("things", transform=lambda rows: [{"name": r["name"].title()} for r in rows],
             columns=["name"])


def downgrade() -> None:
    pass
