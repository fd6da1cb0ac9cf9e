"""calls sys.exit

Revision ID: un000007
Revises: un000006
"""

import sys

from alembic import op

revision = "un000007"
down_revision = "un000006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE things ADD COLUMN gone boolean")
    sys.exit(0)


def downgrade() -> None:
    pass
