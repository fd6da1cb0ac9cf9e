"""A backfill in `upgrade --sql` output: SQL that psql runs batch by batch over every row,
before the revision's stamp (DESIGN.md "Backfills").

The batches are a PL/pgSQL `DO` block walking the table in key order over key ranges — the
same walk migrator makes: bounded by the largest key present when it starts, one `COMMIT` per
batch (the script runs it outside any transaction: the backfill's revision is outside its
transaction until its stamp). Parameters are bound as SQL literals by SQLAlchemy. A `transform=`
backfill (a Python function) has no SQL form: it renders as a comment and a statement that
stops psql there, so a script applied by psql never stamps work it did not do.
"""

from __future__ import annotations

import re
from typing import Any

from migrator.backfill_spec import BackfillSpec

_TAG = "$migrator_backfill$"


def render_sql(spec: BackfillSpec) -> str:
    table = ".".join(_quote(part) for part in spec.table)
    header = (f"-- migrator backfill {spec.name!r} on {table}: batches of {spec.batch_size} "
              f"keys in key order ({', '.join(spec.key)}), one COMMIT per batch.\n"
              "-- (migrator itself keeps a checkpoint in migrator.backfill_progress and adapts "
              "the batch size; this script walks the whole table once.)\n")
    if spec.set is None:
        return header + stop(f"backfill {spec.name!r} transforms rows with a Python function, "
                             "which has no SQL form; apply this revision with: migrator upgrade")
    assignments = _bound(spec.set, spec.params)
    condition = _bound(spec.where, spec.params) if spec.where else None
    if _TAG in assignments or (condition and _TAG in condition):
        return header + stop(f"backfill {spec.name!r} contains {_TAG}; apply this revision "
                             "with: migrator upgrade")
    return header + _walk(table, [_quote(k) for k in spec.key], assignments, condition,
                          spec.batch_size)


def stop(reason: str) -> str:
    """A statement that stops psql (run with ON_ERROR_STOP) here, saying why."""
    message = reason.replace("'", "''").replace("%", "%%")
    return f"DO $migrator$ BEGIN RAISE EXCEPTION 'migrator: {message}'; END $migrator$;\n"


def _walk(table: str, keys: list[str], assignments: str, condition: str | None,
          size: int) -> str:
    cols = ", ".join(keys)
    desc = ", ".join(f"{k} DESC" for k in keys)

    def fields(record: str) -> str:
        return ", ".join(f"{record}.{k}" for k in keys)

    extra = f" AND ({condition})" if condition else ""
    after_lo = f"({cols}) > ({fields('lo')}) AND "
    return f"""DO {_TAG}
DECLARE
    upper_key record;
    lo record;
    hi record;
    started boolean := false;
BEGIN
    SELECT {cols} INTO upper_key FROM {table} ORDER BY {desc} LIMIT 1;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    LOOP
        IF started THEN
            SELECT {cols} INTO hi FROM (SELECT {cols} FROM {table} WHERE {after_lo}({cols}) <= ({fields('upper_key')}) ORDER BY {cols} LIMIT {size}) AS batch ORDER BY {desc} LIMIT 1;
        ELSE
            SELECT {cols} INTO hi FROM (SELECT {cols} FROM {table} WHERE ({cols}) <= ({fields('upper_key')}) ORDER BY {cols} LIMIT {size}) AS batch ORDER BY {desc} LIMIT 1;
        END IF;
        EXIT WHEN NOT FOUND;
        IF started THEN
            UPDATE {table} SET {assignments} WHERE {after_lo}({cols}) <= ({fields('hi')}){extra};
        ELSE
            UPDATE {table} SET {assignments} WHERE ({cols}) <= ({fields('hi')}){extra};
        END IF;
        COMMIT;
        lo := hi;
        started := true;
        EXIT WHEN ({fields('hi')}) >= ({fields('upper_key')});
    END LOOP;
END
{_TAG};
"""  # noqa: E501 - one SQL statement per line reads better than wrapped


def _bound(fragment: str, params: Any) -> str:
    """`fragment` with its `:name` parameters as SQL literals (SQLAlchemy's rendering, named
    paramstyle: a `%` stays a `%`)."""
    import sqlalchemy as sa
    from sqlalchemy.dialects import postgresql

    used = {name: value for name, value in dict(params).items()
            if re.search(rf"(?<!:):{re.escape(name)}\b", fragment)}
    clause = sa.text(fragment).bindparams(**used) if used else sa.text(fragment)
    dialect = postgresql.dialect(paramstyle="named")  # type: ignore[no-untyped-call]
    return str(clause.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))


def _quote(identifier: str) -> str:
    from sqlalchemy.dialects.postgresql.base import PGDialect

    dialect = PGDialect()  # type: ignore[no-untyped-call]  # SQLAlchemy leaves it unannotated
    return str(dialect.identifier_preparer.quote(identifier))
