"""index accounts email

Revision ID: core_0002
Revises: core_0001
"""

from alembic import op

revision = "core_0002"
down_revision = "core_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.get_context().autocommit_block():
        op.create_index("ix_accounts_email", "accounts", ["email"],
                        postgresql_concurrently=True, if_not_exists=True)


def downgrade() -> None:
    op.drop_index("ix_accounts_email", "accounts")
