"""create experiments

Revision ID: 582d2af23f76
Revises: 599d78f5272d
Create Date: 2026-11-23 05:28:00.000000

"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision: str = "582d2af23f76"
down_revision: str | None = "599d78f5272d"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "experiments",
        sa.Column(
            "id",
            postgresql.UUID(as_uuid=True),
            server_default=sa.text("gen_random_uuid()"),
            nullable=False,
        ),
        sa.Column("account_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        # Soft delete: queries filter on deleted_at IS NULL explicitly.
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_experiments"),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name="fk_experiments_account_id_accounts"
        ),
    )
    op.create_index("ix_experiments_account_id", "experiments", ["account_id"])


def downgrade() -> None:
    op.drop_index("ix_experiments_account_id", table_name="experiments")
    op.drop_table("experiments")
