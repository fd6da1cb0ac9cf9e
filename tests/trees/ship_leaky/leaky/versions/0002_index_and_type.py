"""index things by name, add a status type

Revision ID: 1eaf00000002
Revises: 1eaf00000001
"""

from alembic import op

revision = "1eaf00000002"
down_revision = "1eaf00000001"


def upgrade() -> None:
    op.create_index("ix_things_name", "things", ["name"])
    op.execute("CREATE TYPE thing_status AS ENUM ('new', 'done')")


def downgrade() -> None:
    # The mistake under test: the index is dropped, the enum type is left behind.
    op.drop_index("ix_things_name", table_name="things")
