"""The panels plugin's SQLAlchemy models: its tables as its revisions leave them at head.

`plugin.toml` names this module's `metadata` (`models = "panels.models:metadata"`), which
`migrator revision --autogenerate` and the models-match-migrations check compare with the
plugin's schema. Tables carry no schema: the plugin's sessions (`migrator.runtime`) and its
revisions both run with the plugin's schema first on `search_path`.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    ForeignKey,
    Index,
    MetaData,
    Table,
    Text,
    Uuid,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

metadata = MetaData()


class Base(DeclarativeBase):
    metadata = metadata


# core's table, for the foreign key: a platform's shared model. It lives in core's schema,
# which migrator's comparisons for this plugin leave alone.
experiments = Table("experiments", metadata, Column("id", Uuid, primary_key=True), schema="core")


class Panel(Base):
    """A drug panel of an experiment; `drugs` is a JSONB list like [{"name": "cisplatin"}]."""

    __tablename__ = "panels"
    __table_args__ = (
        Index("ix_panels_experiment_id", "experiment_id"),
        Index("ix_panels_created_at", "created_at"),
        Index("ix_panels_experiment_id_created_at", "experiment_id", "created_at"),
        Index("uq_panels_experiment_id_name", "experiment_id", "name", unique=True),
        Index("ix_panels_drugs", "drugs", postgresql_using="gin",
              postgresql_ops={"drugs": "jsonb_path_ops"}),
        Index("ix_panels_drug_names", "drug_names", postgresql_using="gin"),
    )

    id: Mapped[uuid.UUID] = mapped_column(
        Uuid, primary_key=True, server_default=text("gen_random_uuid()"))
    experiment_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("core.experiments.id", name="fk_panels_experiment_id_experiments"))
    name: Mapped[str] = mapped_column(Text)
    drugs: Mapped[list[dict[str, Any]]] = mapped_column(
        JSONB, server_default=text("'[]'::jsonb"), default=list)
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now())
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    notes: Mapped[str | None] = mapped_column(Text)
    # The names in `drugs`, canonical, for `drug_names @> ARRAY[...]` lookups (revisions 0004-6).
    drug_names: Mapped[list[str] | None] = mapped_column(ARRAY(Text))
