"""backfill panel drug_names

Revision ID: f793804564e9
Revises: cde36d3bef11
Create Date: 2026-11-23 06:11:00.000000

"""

from migrator import backfill

# revision identifiers, used by Alembic.
revision: str = "f793804564e9"
down_revision: str | None = "cde36d3bef11"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A data change only, in a revision of its own (migrator refuses a backfill that follows
    # schema changes in the same revision). Batches walk the primary key; each commits with
    # its checkpoint, so a stopped run resumes where it was. `where` skips panels already
    # filled (by the new code, or by a run before a downgrade and upgrade again).
    backfill(
        "panels",
        set=(
            "drug_names = ARRAY(SELECT d->>'name' FROM jsonb_array_elements(drugs) AS d "
            "WHERE jsonb_typeof(d) = 'object' AND d ? 'name')"
        ),
        where="drug_names IS NULL",
        key="id",
    )


def downgrade() -> None:
    # Nothing to undo: the values go with the column when 0004 (cde36d3bef11) is reverted.
    pass
