"""canonical drug names (Python backfill)

Revision ID: 02adf31fccf3
Revises: f793804564e9
Create Date: 2026-11-23 06:12:00.000000

"""

import unicodedata
from typing import Any

from migrator import backfill

# revision identifiers, used by Alembic.
revision: str = "02adf31fccf3"
down_revision: str | None = "f793804564e9"
branch_labels = None
depends_on = None

# The platform's synonyms: brand names and abbreviations lab staff type, by canonical name.
# (In a real plugin this would be the plugin's own normalisation code, imported here: the
# reason to backfill in Python rather than SQL.)
SYNONYMS = {
    "cddp": "cisplatin", "platinol": "cisplatin",
    "paraplatin": "carboplatin", "cbdca": "carboplatin",
    "taxol": "paclitaxel", "adriamycin": "doxorubicin", "5-fu": "fluorouracil",
}


def canonical(name: str) -> str:
    """NFKC, case-folded, inner whitespace collapsed, synonyms resolved."""
    folded = " ".join(unicodedata.normalize("NFKC", name).casefold().split())
    return SYNONYMS.get(folded, folded)


def canonical_names(rows: list[dict[str, Any]]) -> list[dict[str, Any] | None]:
    # One result per row, in order: the new values, or None to leave a row as it is.
    results: list[dict[str, Any] | None] = []
    for row in rows:
        names = row["drug_names"]
        fixed = list(dict.fromkeys(canonical(n) for n in names if n))  # dedupe, keep order
        results.append({"drug_names": fixed} if fixed != names else None)
    return results


def upgrade() -> None:
    # Python form: each batch's rows (the key plus `columns`) go through `canonical_names`
    # and come back as UPDATEs, in the batch's transaction with its checkpoint.
    backfill(
        "panels",
        transform=canonical_names,
        columns=("drug_names",),
        where="cardinality(drug_names) > 0",
        name="panels_canonical_drug_names",
        batch_size=500,
    )


def downgrade() -> None:
    # Canonical names stay (the original spelling is still in `drugs`).
    pass
