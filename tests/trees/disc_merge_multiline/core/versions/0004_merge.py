"""merge teams and projects (as black / ruff format lays out a long tuple)"""

revision: str = "d4"
down_revision: str | tuple[str, ...] | None = (
    "b2",
    "c3",
)


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
