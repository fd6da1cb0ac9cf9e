"""slow step

Revision ID: alpha_0002
Revises: alpha_0001
"""

from alembic import op

revision = "alpha_0002"
down_revision = "alpha_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Slow enough that the eight runners overlap and must queue for the lock.
    op.execute("SELECT pg_sleep(0.3)")
    op.execute("INSERT INTO applied VALUES ('alpha_0002')")


def downgrade() -> None:
    op.execute("DELETE FROM applied WHERE revision = 'alpha_0002'")
