"""A backfill in `upgrade --sql` output: one PL/pgSQL `DO` block that psql runs over every row
before the revision's stamp, with migrator's own checkpoint per batch, so a stopped script
resumes and `migrator upgrade` can take over (DESIGN.md "Backfills")."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from psycopg import sql


def dollar_quote(body: str) -> str:
    """`body` as a dollar-quoted string whose tag does not occur in it."""
    tag, n = "migrator", 0
    while f"${tag}$" in body:
        n += 1
        tag = f"migrator{n}"
    return f"${tag}$\n{body}\n${tag}$"


def _literal_fragment(fragment: str, params: Mapping[str, Any]) -> str:
    """An author's SQL fragment with its `:name` parameters as quoted literals (SQLAlchemy's
    literal rendering; psycopg's `sql.Literal` for values SQLAlchemy has no literal form for),
    compiled with the named paramstyle so `%` stays `%`."""
    import sqlalchemy as sa
    from sqlalchemy.dialects.postgresql.base import PGDialect

    clause = sa.text(fragment)
    used = [name for name in params if name in clause.compile().params]
    marks = {name: f"__migrator_param_{i}__" for i, name in enumerate(used)}
    clause = clause.bindparams(
        *(sa.bindparam(name, marks[name], type_=sa.Text()) for name in used))
    dialect = PGDialect(paramstyle="named")  # type: ignore[no-untyped-call]  # unannotated
    text = str(clause.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))
    for name, mark in marks.items():
        text = text.replace(f"'{mark}'", sql.Literal(params[name]).as_string(None))
    return text


def render_offline(spec: Mapping[str, Any], *, plugin: str, revision: str) -> str:
    """A backfill (its `BackfillSpec.describe()`) as one `DO` block that psql runs outside a
    transaction block: the walk migrator does, in key order over every row up to the largest
    key present when it first starts, one transaction (`COMMIT`) per batch of `batch_size`
    keys matching `where`, each with its checkpoint in `migrator.backfill_progress` (the same
    row and key format as online): a killed script, rerun or followed by `migrator upgrade`,
    resumes after the last committed batch, and a finished backfill is not walked again.
    Identifiers are quoted by psycopg; `set`/`where` are the author's SQL with their
    parameters as literals."""
    if spec.get("set") is None:
        raise ValueError("a transform backfill has no SQL form")
    parts = str(spec["table"]).split(".")
    table = sql.Identifier(*parts)
    keys = [sql.Identifier(k) for k in spec["key"]]
    params = dict(spec.get("params") or {})
    assignments = sql.SQL(_literal_fragment(str(spec["set"]), params))
    where = (sql.SQL(" AND ({})").format(sql.SQL(_literal_fragment(str(spec["where"]), params)))
             if spec.get("where") else sql.SQL(""))
    size, pause = int(spec["batch_size"]), float(spec.get("pause") or 0)

    def variables(prefix: str) -> list[sql.Composable]:
        return [sql.Identifier(f"_migrator_{prefix}_{i}") for i in range(len(keys))]

    upper, last, batch = variables("upper"), variables("last"), variables("batch")
    key_row = sql.SQL("({})").format(sql.SQL(", ").join(keys))

    def row(names: list[sql.Composable]) -> sql.Composed:
        return sql.SQL("({})").format(sql.SQL(", ").join(names))

    def as_json(names: list[sql.Composable]) -> sql.Composed:
        """The key as migrator's checkpoint spells it: a JSON array of the values as text."""
        return sql.SQL("jsonb_build_array({})").format(
            sql.SQL(", ").join(sql.SQL("{}::text").format(n) for n in names))

    def from_json(names: list[sql.Composable], source: str) -> sql.Composed:
        return sql.SQL("").join(
            sql.SQL("        {} := {} ->> {};\n").format(n, sql.Identifier(source),
                                                       sql.Literal(i))
            for i, n in enumerate(names))

    columns = sql.SQL(", ").join(keys)
    descending = sql.SQL(", ").join(sql.SQL("{} DESC").format(k) for k in keys)
    declarations = sql.SQL("").join(
        sql.SQL("    {} {}%TYPE;\n").format(name, sql.Identifier(*parts, key))
        for names in (upper, last, batch) for name, key in zip(names, spec["key"], strict=True))
    checkpoint = sql.SQL("plugin = {} AND revision = {} AND name = {}").format(
        sql.Literal(plugin), sql.Literal(revision), sql.Literal(str(spec["name"])))

    def step(lower: sql.Composable) -> sql.Composed:
        return sql.SQL(
            "SELECT {columns} INTO {batch} FROM (SELECT {columns} FROM {table} WHERE {lower}"
            "{key_row} <= {upper}{where} ORDER BY {columns} LIMIT {size}) AS _migrator_keys "
            "ORDER BY {descending} LIMIT 1;\n"
            "            EXIT WHEN NOT FOUND;\n"
            "            UPDATE {table} SET {assignments} WHERE {lower}{key_row} <= {batch_row}"
            "{where};").format(
                columns=columns, batch=sql.SQL(", ").join(batch), table=table, lower=lower,
                key_row=key_row, upper=row(upper), where=where, size=sql.Literal(size),
                descending=descending, assignments=assignments, batch_row=row(batch))

    body = sql.SQL(
        "#variable_conflict use_column\n"
        "DECLARE\n{declarations}"
        "    _migrator_status text;\n"
        "    _migrator_last jsonb;\n"
        "    _migrator_upper jsonb;\n"
        "    _migrator_rows bigint;\n"
        "BEGIN\n"
        "    INSERT INTO migrator.backfill_progress (plugin, revision, name, status) "
        "VALUES ({plugin}, {revision}, {name}, 'running') "
        "ON CONFLICT (plugin, revision, name) DO NOTHING;\n"
        "    SELECT status, last_key, upper_key INTO _migrator_status, _migrator_last, "
        "_migrator_upper FROM migrator.backfill_progress WHERE {checkpoint} FOR UPDATE;\n"
        "    IF _migrator_status = 'done' THEN\n"
        "        RETURN;  -- finished by an earlier run\n"
        "    END IF;\n"
        "    IF _migrator_upper IS NULL THEN\n"
        "        SELECT {columns} INTO {upper} FROM {table} ORDER BY {descending} LIMIT 1;\n"
        "        IF NOT FOUND THEN\n"
        "            UPDATE migrator.backfill_progress SET status = 'done', updated_at = now() "
        "WHERE {checkpoint};\n"
        "            RETURN;\n"
        "        END IF;\n"
        "        UPDATE migrator.backfill_progress SET upper_key = {upper_json}, "
        "status = 'running', updated_at = now() WHERE {checkpoint};\n"
        "        COMMIT;\n"
        "    ELSE\n{upper_from_json}"
        "    END IF;\n"
        "    IF _migrator_last IS NOT NULL THEN\n{last_from_json}"
        "    END IF;\n"
        "    LOOP\n"
        "        IF _migrator_last IS NULL THEN\n"
        "            {first}\n"
        "        ELSE\n"
        "            {next}\n"
        "        END IF;\n"
        "        GET DIAGNOSTICS _migrator_rows = ROW_COUNT;\n"
        "{advance}"
        "        _migrator_last := {last_json};\n"
        "        UPDATE migrator.backfill_progress SET last_key = _migrator_last, "
        "rows_done = rows_done + _migrator_rows, batches_done = batches_done + 1, "
        "updated_at = now() WHERE {checkpoint};\n"
        "        COMMIT;  -- the batch and its checkpoint together\n{pause}"
        "    END LOOP;\n"
        "    UPDATE migrator.backfill_progress SET status = 'done', updated_at = now() "
        "WHERE {checkpoint};\n"
        "END").format(
            declarations=declarations, columns=columns, upper=sql.SQL(", ").join(upper),
            table=table, descending=descending, first=step(sql.SQL("")),
            next=step(sql.SQL("{} > {} AND ").format(key_row, row(last))),
            advance=sql.SQL("").join(sql.SQL("        {} := {};\n").format(a, b)
                                     for a, b in zip(last, batch, strict=True)),
            pause=sql.SQL("        PERFORM pg_sleep({});\n").format(sql.Literal(pause))
            if pause > 0 else sql.SQL(""),
            plugin=sql.Literal(plugin), revision=sql.Literal(revision),
            name=sql.Literal(str(spec["name"])), checkpoint=checkpoint,
            upper_json=as_json(upper), last_json=as_json(last),
            upper_from_json=from_json(upper, "_migrator_upper"),
            last_from_json=from_json(last, "_migrator_last"))
    text = body.as_string(None)
    header = (f"-- migrator backfill {spec['name']!r} on {table.as_string(None)}: every row "
              f"up to the largest key present when it starts, in key order "
              f"({columns.as_string(None)}), batches of {size}, one transaction (COMMIT) per "
              "batch with its checkpoint in migrator.backfill_progress (a rerun resumes); "
              "psql must run it outside BEGIN ... COMMIT, as this script does.")
    return f"{header}\nDO {dollar_quote(text)};"
