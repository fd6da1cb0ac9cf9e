"""read the Alembic Config, as CKAN's revisions do

Revision ID: of000003
Revises: of000002
"""

from pathlib import Path

from alembic import context, op

revision = "of000003"
down_revision = "of000002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    config = op.get_context().config
    location = context.config.get_main_option("script_location")
    url = config.get_main_option("sqlalchemy.url")
    assert isinstance(config.attributes, dict) and config.config_file_name is None
    assert location is not None and url is not None and "secret" not in url
    op.execute(f"COMMENT ON TABLE events IS 'tree {Path(location).name}'")


def downgrade() -> None:
    pass
