"""create people

Revision ID: people_0001
Revises:
"""

from alembic import op

revision = "people_0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A uuid key: the Python form's checkpoint must hold the key as PostgreSQL spells it.
    op.execute("CREATE TABLE people (id uuid PRIMARY KEY, full_name text, slug text, "
               "counter integer NOT NULL DEFAULT 0)")
    op.execute("INSERT INTO people (id, full_name) SELECT gen_random_uuid(), "
               "CASE WHEN g % 10 = 0 THEN NULL ELSE 'Ádám  Nagy-' || g END "
               "FROM generate_series(1, 1000) AS g")


def downgrade() -> None:
    op.execute("DROP TABLE people")
