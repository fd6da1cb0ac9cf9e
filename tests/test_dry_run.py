"""`upgrade --dry-run` / `downgrade --dry-run`: the plan and SQL of exactly what is pending,
read from a real database in a READ ONLY transaction, changing nothing; each statement
annotated with its locks and the locked tables' row estimates."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psycopg
import pytest
from helpers import chain, settings_for
from psycopg import sql

from migrator import previews, runs
from migrator.review_format import format_markdown, format_text

REPO_ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_PLATFORM = REPO_ROOT / "plugin_migrations"



CORE, PANELS, RESULTS = chain("core"), chain("panels"), chain("analysis_results")
TOTAL = len(CORE) + len(PANELS) + len(RESULTS)


def execute(url: str, *statements: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement.encode())


def snapshot(url: str) -> dict[str, Any]:
    """Every schema, relation (with its kind and column count) and version table row."""
    with psycopg.connect(url, autocommit=True) as conn:
        schemas = conn.execute("SELECT nspname FROM pg_namespace ORDER BY 1").fetchall()
        relations = conn.execute(
            "SELECT n.nspname, c.relname, c.relkind, c.relnatts FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') "
            "ORDER BY 1, 2").fetchall()
        constraints = conn.execute(
            "SELECT conname, convalidated FROM pg_constraint ORDER BY 1").fetchall()
        tables = [r[0] for r in conn.execute(
            "SELECT table_schema FROM information_schema.tables "
            "WHERE table_name = 'alembic_version' ORDER BY 1").fetchall()]
        versions = {schema: conn.execute(sql.SQL("SELECT version_num FROM {} ORDER BY 1").format(
            sql.Identifier(schema, "alembic_version"))).fetchall() for schema in tables}
        history = conn.execute(
            "SELECT count(*) FROM migrator.history").fetchone() \
            if ("migrator",) in schemas else None
    return {"schemas": schemas, "relations": relations, "constraints": constraints,
            "versions": versions, "history": history}


def revisions_of(document: dict[str, Any]) -> dict[str, list[str]]:
    return {p["name"]: [r["revision"] for r in p["revisions"]] for p in document["plugins"]}


def test_dry_run_on_an_empty_database_creates_nothing(
    database_url: str, platform: Path, run_cli: Any
) -> None:
    """On a fresh database, --dry-run lists every revision and leaves the catalog exactly as
    it was: no plugin schema, no version table, not even the migrator schema."""
    before = snapshot(database_url)
    result = run_cli("--database-url", database_url, "--migrations-dir", platform, "upgrade",
                     "--dry-run")

    assert result.returncode == 0, result.stderr
    assert snapshot(database_url) == before
    assert "migrator" not in {s[0] for s in before["schemas"]}
    text = result.stdout
    assert text.startswith(
        f"-- migrator 0.1.0: migrator upgrade --dry-run: {TOTAL} revisions to apply")
    assert "Read in a READ ONLY transaction: nothing was changed." in text
    for revision in (*CORE, *RESULTS, *PANELS):
        assert f"-- Revision {revision}:" in text
    assert ("-- lock: ACCESS EXCLUSIVE on core.accounts: new table\nCREATE TABLE accounts ("
            in text)


def test_dry_run_lists_only_pending_revisions_and_changes_nothing(
    database_url: str, platform: Path, run_cli: Any
) -> None:
    """With core at head and panels at its first revision, --dry-run --format json lists
    exactly panels' later revisions and all of analysis_results'; every version table and the
    catalog are unchanged."""
    settings = settings_for(database_url, platform)
    runs.upgrade(settings, ["panels"], to=PANELS[0])
    before = snapshot(database_url)

    result = run_cli("--database-url", database_url, "--migrations-dir", platform, "upgrade",
                     "--dry-run", "--format", "json")

    assert result.returncode == 0, result.stderr
    assert snapshot(database_url) == before
    document = json.loads(result.stdout)
    assert (document["command"], document["dry_run"], document["pending_revisions"]) == (
        "upgrade", True, len(PANELS) - 1 + len(RESULTS))
    assert revisions_of(document) == {"core": [], "analysis_results": list(RESULTS),
                                      "panels": list(PANELS[1:])}
    by_name = {p["name"]: p for p in document["plugins"]}
    assert {k: by_name["core"][k] for k in ("schema", "state", "from", "to")} == {
        "schema": "core", "state": "up_to_date", "from": CORE[-1], "to": CORE[-1]}
    assert {k: by_name["panels"][k] for k in ("state", "from", "to")} == {
        "state": "pending", "from": PANELS[0], "to": PANELS[-1]}
    assert by_name["analysis_results"]["from"] is None
    indexes, notes = by_name["panels"]["revisions"][:2]
    assert set(indexes) == {"revision", "file", "path", "message", "direction", "transaction",
                            "statements"}
    assert (indexes["file"], indexes["transaction"], indexes["direction"]) == (
        "0002_add_panel_indexes.py", "autocommit_block", "up")
    [statement] = notes["statements"]
    assert statement == {
        "sql": "ALTER TABLE panels ADD COLUMN notes TEXT;", "kind": "revision",
        "in_transaction": True, "verb": "ALTER TABLE",
        "locks": [{"mode": "ACCESS EXCLUSIVE", "table": "panels.panels", "index": None,
                   "exists": True, "estimated_rows": statement["locks"][0]["estimated_rows"],
                   "blocks": "blocks reads and writes"}]}

    # Read-only, whatever the plan: a plugin named alone brings its dependencies' state.
    alone = previews.upgrade_dry_run(settings, ["panels"])
    assert [p.name for p in alone.plan.plugins] == ["core", "panels"]
    assert snapshot(database_url) == before


def test_locks_carry_the_catalogs_row_estimates(database_url: str, platform: Path) -> None:
    """Each statement names the lock it takes on which table, with the table's row estimate
    from the catalog; a table created earlier in the plan is "new"; Markdown flags the risk."""
    settings = settings_for(database_url, platform)
    runs.upgrade(settings, ["panels"], to=PANELS[1])
    execute(database_url,
            "INSERT INTO core.accounts (email) SELECT 'user' || g || '@example.org' "
            "FROM generate_series(1, 300) g",
            "INSERT INTO core.experiments (account_id, name) SELECT id, 'e' FROM core.accounts",
            "INSERT INTO panels.panels (experiment_id, name) "
            "SELECT id, 'panel' FROM core.experiments",
            "ANALYZE core.experiments", "ANALYZE panels.panels")

    review = previews.upgrade_dry_run(settings)
    document = review.as_dict()
    plugins = {p["name"]: p for p in document["plugins"]}
    notes = plugins["panels"]["revisions"][0]
    [lock] = notes["statements"][0]["locks"]
    assert (lock["mode"], lock["table"], lock["exists"], lock["estimated_rows"]) == (
        "ACCESS EXCLUSIVE", "panels.panels", True, 300)
    created, indexed = plugins["analysis_results"]["revisions"]
    modes = {(x["mode"], x["table"], x["exists"], x["estimated_rows"])
             for x in created["statements"][0]["locks"]}
    assert modes == {("ACCESS EXCLUSIVE", "analysis_results.analysis_results", False, None),
                     ("SHARE ROW EXCLUSIVE", "core.experiments", True, 300)}
    concurrent = indexed["statements"][0]
    assert (concurrent["in_transaction"], concurrent["locks"][0]["mode"],
            concurrent["locks"][0]["exists"]) == (False, "SHARE UPDATE EXCLUSIVE", False)

    text = format_text(review)
    assert ("-- lock: ACCESS EXCLUSIVE on panels.panels: ~300 rows, blocks reads and writes\n"
            "ALTER TABLE panels ADD COLUMN notes TEXT;") in text
    markdown = format_markdown(review)
    assert markdown.startswith("### migrator upgrade plan\n")
    assert (f"| `panels` | `panels` | `7c3aa4ddbdb2` | `{PANELS[-1]}` | {len(PANELS) - 2} |"
            in markdown)
    assert ("| 1 | `ALTER TABLE panels ADD COLUMN notes TEXT;` | ACCESS EXCLUSIVE on "
            "`panels.panels` — **blocks reads and writes** | ~300 rows |") in markdown
    assert "```sql\nBEGIN;\nALTER TABLE panels ADD COLUMN notes TEXT;" in markdown


def test_backfill_shows_its_specification_and_row_estimate(
    database_url: str, tree: Any
) -> None:
    """A pending backfill appears as its specification with the table's estimated rows."""
    trees = tree("sql_backfill")
    settings = settings_for(database_url, trees)
    runs.upgrade(settings, ["catalog"], to="5b1f00000001")
    execute(database_url, "INSERT INTO catalog.items (name) SELECT 'item ' || g "
                          "FROM generate_series(1, 1200) g", "ANALYZE catalog.items")
    before = snapshot(database_url)

    review = previews.upgrade_dry_run(settings)

    assert snapshot(database_url) == before
    [plugin] = review.as_dict()["plugins"]
    [revision] = plugin["revisions"]
    [statement] = revision["statements"]
    assert statement["kind"] == "backfill" and revision["transaction"] == "autocommit_block"
    spec = statement["backfill"]
    assert {k: spec[k] for k in ("name", "table", "key", "set", "where", "batch_size",
                                 "estimated_rows")} == {
        "name": "items", "table": "items", "key": ["id"], "set": "name_upper = upper(name)",
        "where": "name_upper IS NULL", "batch_size": 500, "estimated_rows": 1200}
    assert ("-- backfill 'items' on items (~1,200 rows): set name_upper = upper(name) where "
            "name_upper IS NULL; key id, batches of 500") in format_text(review)


def test_nothing_pending_and_downgrade_dry_run(
    database_url: str, platform: Path, run_cli: Any
) -> None:
    """At head, --dry-run says nothing is pending; `downgrade --dry-run` lists what it would
    revert, newest first, and changes nothing either."""
    settings = settings_for(database_url, platform)
    runs.upgrade(settings)
    before = snapshot(database_url)

    idle = run_cli("--database-url", database_url, "--migrations-dir", platform, "upgrade",
                   "--dry-run")
    assert idle.returncode == 0, idle.stderr
    assert "--dry-run: nothing pending" in idle.stdout and "BEGIN;" not in idle.stdout

    result = run_cli("--database-url", database_url, "--migrations-dir", platform, "downgrade",
                     "--plugin", "panels", "--to", PANELS[0], "--dry-run", "--format", "json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["command"] == "downgrade"
    [panels] = document["plugins"]
    assert (panels["from"], panels["to"]) == (PANELS[-1], PANELS[0])
    assert [r["revision"] for r in panels["revisions"]] == list(reversed(PANELS[1:]))
    assert {r["direction"] for r in panels["revisions"]} == {"down"}
    assert snapshot(database_url) == before


def test_dry_run_needs_a_database(run_cli: Any, platform: Path) -> None:
    """--dry-run reads the database: with none configured it exits 2 saying how to set one."""
    result = run_cli("--migrations-dir", platform, "upgrade", "--dry-run")
    assert result.returncode == 2
    assert "MIGRATOR_DATABASE_URL" in result.stderr


@pytest.mark.parametrize(("statement", "locks"), [
    ("CREATE INDEX ix ON panels (x)", [("SHARE", "panels")]),
    ('CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS ix ON "Core".t (x)',
     [("SHARE UPDATE EXCLUSIVE", "Core.t")]),
    ("ALTER TABLE panels ADD COLUMN notes text", [("ACCESS EXCLUSIVE", "panels")]),
    ("ALTER TABLE ONLY panels ADD CONSTRAINT fk FOREIGN KEY (e) REFERENCES core.experiments "
     "(id) NOT VALID", [("SHARE ROW EXCLUSIVE", "core.experiments"),
                        ("SHARE ROW EXCLUSIVE", "panels")]),
    ("ALTER TABLE panels VALIDATE CONSTRAINT fk", [("SHARE UPDATE EXCLUSIVE", "panels")]),
    ("ALTER TABLE panels ALTER COLUMN n SET STATISTICS 500",
     [("SHARE UPDATE EXCLUSIVE", "panels")]),
    ("DROP INDEX CONCURRENTLY IF EXISTS ix", [("SHARE UPDATE EXCLUSIVE", "ix")]),
    ("DROP TABLE a, b", [("ACCESS EXCLUSIVE", "a"), ("ACCESS EXCLUSIVE", "b")]),
    ("UPDATE items SET note = 'DROP TABLE x; ALTER TABLE y'", [("ROW EXCLUSIVE", "items")]),
    ("LOCK TABLE items IN SHARE MODE", [("SHARE", "items")]),
    ("CREATE VIEW v AS SELECT * FROM items", []),
])
def test_statement_locks(statement: str, locks: list[tuple[str, str]]) -> None:
    """The lock each kind of statement takes, on which relation (strings and quoted names are
    read as such, never as keywords)."""
    from migrator.sql_scan import analyze

    found = analyze(statement)
    assert found.known
    assert [(lock.mode, str(lock.relation)) for lock in found.locks] == locks
