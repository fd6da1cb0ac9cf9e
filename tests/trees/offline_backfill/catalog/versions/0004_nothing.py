"""a revision that emits nothing

Revision ID: of000004
Revises: of000003
"""

revision = "of000004"
down_revision = "of000003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
