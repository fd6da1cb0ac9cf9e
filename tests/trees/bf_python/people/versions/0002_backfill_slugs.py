"""backfill slugs in Python

Revision ID: people_0002
Revises: people_0001
"""

import unicodedata

from migrator import backfill

revision = "people_0002"
down_revision = "people_0001"
branch_labels = None
depends_on = None


def slugify(name: str) -> str:
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return "-".join(part for part in ascii_name.lower().replace("-", " ").split())


def slugs(rows: list[dict[str, object]]) -> list[dict[str, object] | None]:
    # One result per row, in order; None leaves a row alone (people without a name).
    return [None if row["full_name"] is None else
            {"slug": slugify(str(row["full_name"])), "counter": int(str(row["counter"])) + 1}
            for row in rows]


def upgrade() -> None:
    backfill("people", transform=slugs, columns=("full_name", "counter"), batch_size=128,
             target_batch_time=0)


def downgrade() -> None:
    pass
