"""merge teams and projects"""

revision = "d4"
down_revision = ("b2", "c3")


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
