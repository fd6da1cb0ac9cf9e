"""The notes plugin's tables at head, as SQLAlchemy models (compared by `migrator check`)."""

from sqlalchemy import Column, ForeignKey, Integer, MetaData, Table, Text

metadata = MetaData()

# core's table, only so the foreign key resolves: `check` compares the notes schema alone.
accounts = Table("accounts", metadata, Column("id", Integer, primary_key=True), schema="core")

notes = Table(
    "notes", metadata,
    Column("id", Integer, primary_key=True),
    Column("account_id", Integer, ForeignKey("core.accounts.id", name="fk_notes_account_id"),
           nullable=False),
    Column("body", Text, nullable=False),
)
