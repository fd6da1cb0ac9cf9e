"""backfill items

Revision ID: bf_0002
Revises: bf_0001
"""

import os

from migrator import backfill

revision = "bf_0002"
down_revision = "bf_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # The tests tune the batches through TEST_BF_* variables; the sleeps make a batch slow
    # enough to be caught in flight (TEST_BF_NAP once per batch, TEST_BF_ROW_NAP per row).
    env = os.environ.get
    # TEST_BF_FILL: the SQL expression `filled` gets (a test's own constant, not user input).
    fill = env("TEST_BF_FILL", "payload->>'name'")
    assignments = ["counter = counter + 1", f"filled = {fill}"]
    params = {}
    if env("TEST_BF_NAP"):
        assignments[0] += " + (SELECT length(pg_sleep(:nap)::text))"
        params["nap"] = float(env("TEST_BF_NAP", "0"))
    if env("TEST_BF_ROW_NAP"):
        assignments[0] += " + length(pg_sleep(:row_nap)::text)"
        params["row_nap"] = float(env("TEST_BF_ROW_NAP", "0"))
    target = env("TEST_BF_TARGET")
    backfill(
        "items",
        set=", ".join(assignments),
        params=params,
        batch_size=int(env("TEST_BF_BATCH", "1000")),
        statement_timeout=env("TEST_BF_STATEMENT_TIMEOUT", "30s"),
        max_retries=int(env("TEST_BF_MAX_RETRIES", "10")),
        **({"target_batch_time": target} if target else {}),
    )


def downgrade() -> None:
    # The data change stays; a new upgrade backfills again (and counts it).
    pass
