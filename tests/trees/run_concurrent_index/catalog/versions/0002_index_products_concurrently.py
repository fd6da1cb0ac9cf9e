"""index products by name, concurrently

Revision ID: c0ffee000002
Revises: c0ffee000001
"""

from alembic import op

revision: str = "c0ffee000002"
down_revision: str | None = "c0ffee000001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # CREATE INDEX CONCURRENTLY cannot run inside a transaction block.
    with op.get_context().autocommit_block():
        op.create_index(
            "ix_products_name",
            "products",
            ["name"],
            postgresql_concurrently=True,
            if_not_exists=True,
        )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.drop_index("ix_products_name", table_name="products", postgresql_concurrently=True)
