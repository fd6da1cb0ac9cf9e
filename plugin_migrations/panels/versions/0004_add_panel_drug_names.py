"""add panel drug_names

Revision ID: cde36d3bef11
Revises: f6f7c7c2d5c1
Create Date: 2026-11-23 06:10:00.000000

"""

from alembic import op

# revision identifiers, used by Alembic.
revision: str = "cde36d3bef11"
down_revision: str | None = "f6f7c7c2d5c1"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The drug names as a relational column: `drug_names @> ARRAY['cisplatin']` (or
    # `= ANY(drug_names)`) served by a GIN index is the usual way to make "panels with drug X"
    # fast on PostgreSQL, instead of JSONB containment over the whole drugs document. The next
    # revision fills it from `drugs`; the application writes it for new panels.
    #
    # Adding a nullable column without a default only touches the catalog (no table rewrite).
    # IF NOT EXISTS: the index below commits separately, and a rerun after a crash between the
    # two must get past this line.
    op.execute("ALTER TABLE panels ADD COLUMN IF NOT EXISTS drug_names text[]")
    # Built CONCURRENTLY so writes go on meanwhile (outside the transaction, hence the block).
    # On a large table, building it after the backfill instead would be cheaper (one build
    # rather than an index update per row); here it exists first, so panels the new code
    # writes during the backfill are indexed from the start.
    with op.get_context().autocommit_block():
        op.create_index("ix_panels_drug_names", "panels", ["drug_names"],
                        postgresql_using="gin", postgresql_concurrently=True,
                        if_not_exists=True)


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.drop_index("ix_panels_drug_names", table_name="panels",
                      postgresql_concurrently=True, if_exists=True)
    op.drop_column("panels", "drug_names")
