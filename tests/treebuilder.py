"""Plugin trees written by the tests themselves: a revision is a few lines of Python."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Rev:
    """One revision: its id, its parent (None for the first), and its bodies."""

    revision: str
    down: str | tuple[str, ...] | None
    upgrade: str = "pass"
    downgrade: str = "pass"
    message: str = ""


_TEMPLATE = '''"""{message}"""
import sys

import sqlalchemy as sa
from alembic import op

from migrator import backfill

revision = "{revision}"
down_revision = {down!r}
branch_labels = None
depends_on = None


def upgrade() -> None:
{upgrade}


def downgrade() -> None:
{downgrade}
'''


def write_plugin(root: Path, name: str, revisions: list[Rev], *, toml: str = "") -> Path:
    """`root/name/` with a plugin.toml (`toml` lines) and one file per revision."""
    versions = root / name / "versions"
    versions.mkdir(parents=True, exist_ok=True)
    (root / name / "plugin.toml").write_text(toml + "\n")
    for number, rev in enumerate(revisions, start=1):
        (versions / f"{number:04d}_{rev.revision}.py").write_text(_TEMPLATE.format(
            message=rev.message or f"revision {rev.revision}", revision=rev.revision,
            down=rev.down, upgrade=_indent(rev.upgrade), downgrade=_indent(rev.downgrade)))
    return root / name


def _indent(body: str) -> str:
    return textwrap.indent(textwrap.dedent(body).strip() or "pass", "    ")
