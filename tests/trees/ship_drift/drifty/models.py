"""drifty's models: `price` is in the models but in no revision."""

from sqlalchemy import Column, Integer, MetaData, Numeric, Table, Text

metadata = MetaData()

items = Table(
    "items",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", Text, nullable=False),
    Column("price", Numeric(10, 2)),
)
