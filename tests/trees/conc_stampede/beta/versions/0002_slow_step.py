"""slow step

Revision ID: beta_0002
Revises: beta_0001
"""

from alembic import op

revision = "beta_0002"
down_revision = "beta_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Slow enough that the eight runners overlap and must queue for the lock.
    op.execute("SELECT pg_sleep(0.3)")
    op.execute("INSERT INTO applied VALUES ('beta_0002')")


def downgrade() -> None:
    op.execute("DELETE FROM applied WHERE revision = 'beta_0002'")
