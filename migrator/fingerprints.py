"""Schema fingerprints: what the catalog says about the objects in some schemas, to compare a
database before and after a round trip (upgrade, downgrade, upgrade) in `migrator.testing`."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field

from migrator.config import DatabaseUrl

# Every query returns (kind, identity, definition) for the objects in the schemas %(schemas)s,
# leaving out migrator's own: the version tables and the `migrator` schema.
_CATALOG_QUERIES = (
    # tables, views, materialized views, sequences, foreign tables, composite types
    """SELECT 'relation', n.nspname || '.' || c.relname,
              concat_ws(' ', c.relkind, c.relpersistence, c.relrowsecurity,
                        c.relforcerowsecurity, c.relacl::text,
                        obj_description(c.oid, 'pg_class'))
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE n.nspname = ANY(%(schemas)s) AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f', 'c')
         AND c.relname <> 'alembic_version'""",
    # columns, by position among the live ones (a dropped and re-added column moves)
    """SELECT 'column', n.nspname || '.' || c.relname || '.' || a.attname,
              concat_ws(' ', row_number() OVER (PARTITION BY c.oid ORDER BY a.attnum),
                        format_type(a.atttypid, a.atttypmod),
                        CASE WHEN a.attnotnull THEN 'NOT NULL' END,
                        'DEFAULT ' || pg_get_expr(d.adbin, d.adrelid),
                        'IDENTITY ' || NULLIF(a.attidentity::text, ''),
                        'GENERATED ' || NULLIF(a.attgenerated::text, ''),
                        'COLLATE ' || co.collname, col_description(c.oid, a.attnum))
       FROM pg_attribute a
       JOIN pg_class c ON c.oid = a.attrelid
       JOIN pg_namespace n ON n.oid = c.relnamespace
       LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
       LEFT JOIN pg_collation co ON co.oid = a.attcollation AND a.attcollation <> 100
       WHERE n.nspname = ANY(%(schemas)s) AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'c')
         AND a.attnum > 0 AND NOT a.attisdropped AND c.relname <> 'alembic_version'""",
    # constraints of tables and of domains
    """SELECT 'constraint', n.nspname || '.' || coalesce(c.relname, t.typname) || '.'
                            || con.conname,
              pg_get_constraintdef(con.oid)
       FROM pg_constraint con
       JOIN pg_namespace n ON n.oid = con.connamespace
       LEFT JOIN pg_class c ON c.oid = con.conrelid
       LEFT JOIN pg_type t ON t.oid = con.contypid
       WHERE n.nspname = ANY(%(schemas)s) AND coalesce(c.relname, '') <> 'alembic_version'""",
    """SELECT 'index', n.nspname || '.' || ic.relname, pg_get_indexdef(i.indexrelid)
       FROM pg_index i
       JOIN pg_class ic ON ic.oid = i.indexrelid
       JOIN pg_class c ON c.oid = i.indrelid
       JOIN pg_namespace n ON n.oid = ic.relnamespace
       WHERE n.nspname = ANY(%(schemas)s) AND c.relname <> 'alembic_version'""",
    """SELECT 'view', n.nspname || '.' || c.relname, pg_get_viewdef(c.oid)
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE n.nspname = ANY(%(schemas)s) AND c.relkind IN ('v', 'm')""",
    """SELECT 'sequence', n.nspname || '.' || c.relname,
              concat_ws(' ', format_type(s.seqtypid, NULL), s.seqstart, s.seqincrement,
                        s.seqmin, s.seqmax, s.seqcache, s.seqcycle)
       FROM pg_sequence s
       JOIN pg_class c ON c.oid = s.seqrelid
       JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE n.nspname = ANY(%(schemas)s)""",
    # enums, domains, ranges and base types (composite types are relations above)
    """SELECT 'type', n.nspname || '.' || t.typname,
              concat_ws(' ', t.typtype, format_type(t.typbasetype, t.typtypmod),
                        CASE WHEN t.typnotnull THEN 'NOT NULL' END, t.typdefault,
                        (SELECT string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder)
                         FROM pg_enum e WHERE e.enumtypid = t.oid))
       FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
       WHERE n.nspname = ANY(%(schemas)s) AND t.typtype IN ('e', 'd', 'r', 'm', 'b')
         AND NOT EXISTS (SELECT 1 FROM pg_type el WHERE el.typarray = t.oid)""",
    """SELECT 'function', n.nspname || '.' || p.proname || '('
                          || pg_get_function_identity_arguments(p.oid) || ')',
              CASE WHEN p.prokind = 'a' THEN 'aggregate' ELSE pg_get_functiondef(p.oid) END
       FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
       WHERE n.nspname = ANY(%(schemas)s)""",
    """SELECT 'trigger', n.nspname || '.' || c.relname || '.' || t.tgname,
              pg_get_triggerdef(t.oid)
       FROM pg_trigger t
       JOIN pg_class c ON c.oid = t.tgrelid
       JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE n.nspname = ANY(%(schemas)s) AND NOT t.tgisinternal""",
    """SELECT 'policy', schemaname || '.' || tablename || '.' || policyname,
              concat_ws(' ', permissive, cmd, roles::text, qual, with_check)
       FROM pg_policies WHERE schemaname = ANY(%(schemas)s)""",
    """SELECT 'extension', e.extname, n.nspname || ' ' || e.extversion
       FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
       WHERE n.nspname = ANY(%(schemas)s)""",
)


@dataclass(frozen=True, slots=True)
class Fingerprint:
    """What the catalog says about the objects in some schemas: identity -> definition."""

    objects: dict[str, str] = field(default_factory=dict)

    @property
    def digest(self) -> str:
        text = json.dumps(sorted(self.objects.items()), separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def differences(self, other: Fingerprint) -> list[str]:
        """How `other` differs from this one, one line per object, sorted."""
        lines = []
        for key in sorted(self.objects.keys() | other.objects.keys()):
            before, after = self.objects.get(key), other.objects.get(key)
            if before == after:
                continue
            if before is None:
                lines.append(f"+ {key}: {after}")
            elif after is None:
                lines.append(f"- {key}: {before}")
            else:
                lines.append(f"~ {key}: {before!r} -> {after!r}")
        return lines

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Fingerprint) and self.objects == other.objects

    def __hash__(self) -> int:
        return hash(self.digest)


def schema_fingerprint(url: DatabaseUrl | str, schemas: Sequence[str] | None = None
                       ) -> Fingerprint:
    """The fingerprint of `schemas` (default: every schema but PostgreSQL's and migrator's),
    leaving out the version tables, which a downgrade to base keeps by design."""
    import psycopg

    conninfo = url.conninfo if isinstance(url, DatabaseUrl) else DatabaseUrl.parse(
        url, source="url").conninfo
    objects: dict[str, str] = {}
    with psycopg.connect(conninfo, autocommit=True) as conn:
        if schemas is None:
            schemas = [row[0] for row in conn.execute(
                "SELECT nspname FROM pg_namespace WHERE nspname NOT LIKE 'pg\\_%%' "
                "AND nspname NOT IN ('information_schema', 'migrator')").fetchall()]
        for query in _CATALOG_QUERIES:
            for kind, identity, definition in conn.execute(query, {"schemas": list(schemas)}):
                objects[f"{kind} {identity}"] = definition or ""
    return Fingerprint(objects)
