"""What a revision does cannot make migrator lie (DESIGN.md "How a run goes" 6 and 7).

Each scenario is a small tree of our own revisions doing what real trees do — exit, raise
BaseExceptions, commit or roll back migrator's transaction, leave settings behind, leave an
INVALID index — run through the real command line against a real database; the report (exit
code, error line, history) and the database (tables, stamps) must agree.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from helpers import error_lines, fetch, version_of
from treebuilder import Rev, write_plugin

Run = Callable[..., Any]

CREATE_T = 'op.create_table("t", sa.Column("id", sa.Integer, primary_key=True))'


@pytest.fixture
def migrate(database_url: str, run_cli: Any, cli_env: dict[str, str], tmp_path: Path) -> Run:
    """`migrate(*args)`: the CLI on `tmp_path/plugins` and the test's database."""
    env = {**cli_env, "MIGRATOR_DATABASE_URL": database_url,
           "MIGRATOR_MIGRATIONS_DIR": str(tmp_path / "plugins")}

    def run(*args: str, **extra_env: str) -> Any:
        return run_cli(*args, env={**env, **extra_env})

    return run


def table_exists(url: str, qualified: str) -> bool:
    return fetch(url, "SELECT to_regclass(%s) IS NOT NULL", (qualified,)) == [(True,)]


def history(url: str, plugin: str) -> list[tuple[str, str, str, bool | None]]:
    return [tuple(r) for r in fetch(
        url, "SELECT revision, direction, outcome, atomic FROM migrator.history "
        "WHERE plugin = %s ORDER BY id", (plugin,))]


# -- anything a revision raises fails it ---------------------------------------------------------


@pytest.mark.parametrize(("body", "said"), [
    ("sys.exit(0)", "called sys.exit(0)"),
    ("sys.exit(3)", "called sys.exit(3)"),
    ("raise KeyboardInterrupt", "raised KeyboardInterrupt"),
    ("class Custom(BaseException):\n    pass\nraise Custom('custom base exception')",
     "Custom: custom base exception"),
], ids=["sys.exit(0)", "sys.exit(3)", "KeyboardInterrupt", "custom BaseException"])
def test_a_revision_that_raises_anything_fails_rolled_back_and_unstamped(
    database_url: str, migrate: Run, tmp_path: Path, body: str, said: str,
) -> None:
    write_plugin(tmp_path / "plugins", "exits", [
        Rev("e1", None, CREATE_T),
        Rev("e2", "e1", f'op.create_table("u", sa.Column("id", sa.Integer))\n{body}'),
    ])
    result = migrate("upgrade")

    assert result.returncode == 1, result.stderr
    [line] = error_lines(result.stderr)
    assert "'exits'" in line and "e2" in line and said in line, line
    assert "Traceback" not in result.stderr
    assert version_of(database_url, "exits") == ["e1"]
    assert table_exists(database_url, "exits.t")
    assert not table_exists(database_url, "exits.u")
    assert history(database_url, "exits") == [("e1", "up", "applied", True),
                                              ("e2", "up", "failed", None)]
    [finished] = [json.loads(x) for x in result.stderr.splitlines() if '"run.finished"' in x]
    assert finished["outcome"] == "failed"


# -- revisions that end migrator's transaction -----------------------------------------------------

ROWS = ('op.create_table("items", sa.Column("id", sa.Integer, primary_key=True), '
        'sa.Column("code", sa.Text), sa.Column("size", sa.Integer))\n'
        'op.execute("INSERT INTO items (id, code) SELECT g, \'c\' || g '
        'FROM generate_series(1, 3000) g")')

# PyPI warehouse's shape: commit migrator's transaction, then build an index concurrently.
COMMIT_THEN_CONCURRENT_INDEX = '''
op.get_bind().commit()
with op.get_context().autocommit_block():
    op.create_index("ix_items_code", "items", ["code"], unique=True,
                    postgresql_concurrently=True)
'''
# warehouse's other shape: a hand-written batch loop committing each batch, then NOT NULL.
BATCH_LOOP_THEN_NOT_NULL = '''
bind = op.get_bind()
while True:
    done = bind.execute(sa.text(
        "UPDATE items SET size = 1 WHERE id IN (SELECT id FROM items WHERE size IS NULL "
        "LIMIT 1000)")).rowcount
    bind.commit()
    if not done:
        break
op.alter_column("items", "size", nullable=False)
'''
EXECUTE_COMMIT = '''
op.execute("UPDATE items SET size = 2")
op.execute("COMMIT")
op.alter_column("items", "size", nullable=False)
'''


@pytest.mark.parametrize("body", [COMMIT_THEN_CONCURRENT_INDEX, BATCH_LOOP_THEN_NOT_NULL,
                                  EXECUTE_COMMIT],
                         ids=["commit+autocommit_block", "batch loop+NOT NULL", "execute COMMIT"])
def test_a_revision_that_commits_is_kept_and_stamped_not_atomic_even_when_last(
    database_url: str, migrate: Run, tmp_path: Path, json_logs: Any, body: str,
) -> None:
    write_plugin(tmp_path / "plugins", "commits", [Rev("c1", None, ROWS), Rev("c2", "c1", body)])
    result = migrate("upgrade")

    assert result.returncode == 0, result.stderr
    assert version_of(database_url, "commits") == ["c2"]
    assert history(database_url, "commits") == [("c1", "up", "applied", True),
                                                ("c2", "up", "applied", False)]
    if body is COMMIT_THEN_CONCURRENT_INDEX:
        assert fetch(database_url, "SELECT i.indisvalid FROM pg_index i WHERE i.indexrelid = "
                     "'commits.ix_items_code'::regclass") == [(True,)]
    else:
        assert fetch(database_url, "SELECT count(*) FROM commits.items WHERE size IS NULL"
                     ) == [(0,)]
        assert fetch(database_url, "SELECT is_nullable FROM information_schema.columns WHERE "
                     "table_schema = 'commits' AND table_name = 'items' AND column_name = 'size'"
                     ) == [("NO",)]
    warned = [e for e in json_logs(result.stderr) if e["event"] == "revision.not_atomic"]
    assert [e["revision"] for e in warned] == ["c2"]

    again = migrate("upgrade")
    assert again.returncode == 0, again.stderr
    assert not [e for e in json_logs(again.stderr) if e["event"] == "revision.applied"]
    assert len(history(database_url, "commits")) == 2


def test_a_revision_that_rolls_back_fails_and_is_not_stamped(
    database_url: str, migrate: Run, tmp_path: Path,
) -> None:
    write_plugin(tmp_path / "plugins", "rollsback", [
        Rev("r1", None, CREATE_T),
        Rev("r2", "r1", 'op.create_table("u", sa.Column("id", sa.Integer))\n'
                        'op.execute("ROLLBACK")\n'
                        'op.create_table("v", sa.Column("id", sa.Integer))'),
    ])
    result = migrate("upgrade")

    assert result.returncode == 1, result.stderr
    [line] = error_lines(result.stderr)
    assert "r2" in line and "rolled back migrator's transaction" in line, line
    assert version_of(database_url, "rollsback") == ["r1"]
    assert not table_exists(database_url, "rollsback.u")
    assert not table_exists(database_url, "rollsback.v")
    assert history(database_url, "rollsback")[-1] == ("r2", "up", "failed", None)


# -- session state never leaks --------------------------------------------------------------------

SEE = ('op.execute("CREATE TABLE IF NOT EXISTS public.seen (plugin text, revision text, '
       "search_path text, lock_timeout text, statement_timeout text, work_mem text, "
       "role text)\")\n"
       "op.execute(\"INSERT INTO public.seen SELECT '{plugin}', '{rev}', "
       "current_setting('search_path'), current_setting('lock_timeout'), "
       "current_setting('statement_timeout'), current_setting('work_mem'), current_user\")")
LEAK = ("op.execute(\"SET search_path TO public\")\n"
        "op.execute(\"SET lock_timeout = '61s'\")\n"
        "op.execute(\"SET statement_timeout = '1h'\")\n"
        "op.execute(\"SET work_mem = '77MB'\")")


@pytest.mark.parametrize("inside_autocommit_block", [False, True],
                         ids=["in the transaction", "in an autocommit block"])
def test_settings_a_revision_sets_do_not_reach_the_next_revision_or_plugin(
    database_url: str, migrate: Run, tmp_path: Path, inside_autocommit_block: bool,
) -> None:
    leak = ("with op.get_context().autocommit_block():\n" + "\n".join(
        "    " + line for line in LEAK.splitlines())) if inside_autocommit_block else LEAK
    write_plugin(tmp_path / "plugins", "leaky", [
        Rev("l1", None, leak), Rev("l2", "l1", SEE.format(plugin="leaky", rev="l2"))])
    write_plugin(tmp_path / "plugins", "later", [
        Rev("n1", None, SEE.format(plugin="later", rev="n1"))], toml='depends_on = ["leaky"]')
    result = migrate("upgrade", MIGRATOR_LOCK_TIMEOUT="1s")

    assert result.returncode == 0, result.stderr
    seen = fetch(database_url, "SELECT plugin, search_path, lock_timeout, statement_timeout, "
                 "work_mem FROM public.seen ORDER BY plugin")
    default_work_mem = fetch(database_url, "SELECT boot_val || coalesce(unit, '') FROM "
                             "pg_settings WHERE name = 'work_mem'")[0][0]
    assert default_work_mem != "77MB"
    assert [s[:4] for s in seen] == [("later", "later, public", "1s", "0"),
                                     ("leaky", "leaky, public", "1s", "0")]
    assert all(s[4] != "77MB" for s in seen)


# -- INVALID indexes ----------------------------------------------------------------------------

DUPLICATES = ('op.create_table("codes", sa.Column("id", sa.Integer, primary_key=True), '
              'sa.Column("code", sa.Text))\n'
              "op.execute(\"INSERT INTO codes (id, code) VALUES (1, 'a'), (2, 'a'), (3, 'b')\")")
UNIQUE_CONCURRENTLY = '''
with op.get_context().autocommit_block():
    op.create_index("ux_codes_code", "codes", ["code"], unique=True,
                    postgresql_concurrently=True, if_not_exists=True)
'''


def test_a_failed_unique_concurrent_build_is_dropped_and_rebuilt_once_the_data_is_fixed(
    database_url: str, migrate: Run, tmp_path: Path, json_logs: Any,
) -> None:
    write_plugin(tmp_path / "plugins", "uniq", [
        Rev("u1", None, DUPLICATES), Rev("u2", "u1", UNIQUE_CONCURRENTLY)])
    failed = migrate("upgrade")

    assert failed.returncode == 1, failed.stderr
    [line] = error_lines(failed.stderr)
    assert "u2" in line and "could not create unique index" in line, line
    assert version_of(database_url, "uniq") == ["u1"]
    invalid = "SELECT indisvalid FROM pg_index WHERE indexrelid = 'uniq.ux_codes_code'::regclass"
    assert fetch(database_url, invalid) == [(False,)]  # PostgreSQL leaves it behind

    fetch(database_url, "DELETE FROM uniq.codes WHERE id = 2")
    fixed = migrate("upgrade")
    assert fixed.returncode == 0, fixed.stderr
    dropped = [e for e in json_logs(fixed.stderr) if e["event"] == "index.invalid_dropped"]
    assert dropped and dropped[0]["indexes"] == ["uniq.ux_codes_code"]
    assert fetch(database_url, invalid) == [(True,)]  # rebuilt, although IF NOT EXISTS
    assert version_of(database_url, "uniq") == ["u2"]


@pytest.mark.parametrize(("plugin", "shown"), [("swallow", "swallow.ux"),
                                                ("select", '"select".ux')],
                         ids=["plain", "reserved-word schema"])
def test_a_revision_is_never_stamped_while_its_schema_has_an_invalid_index(
    database_url: str, migrate: Run, tmp_path: Path, plugin: str, shown: str,
) -> None:
    """A revision that swallows the failed build and returns is still not stamped (also in a
    schema whose name must be quoted: the check resolves it with quote_ident)."""
    swallow = ("from sqlalchemy.exc import DBAPIError\n"
               "with op.get_context().autocommit_block():\n"
               "    try:\n"
               "        op.execute('CREATE UNIQUE INDEX CONCURRENTLY ux ON codes (code)')\n"
               "    except DBAPIError:\n"
               "        pass")
    write_plugin(tmp_path / "plugins", plugin, [Rev("s1", None, DUPLICATES),
                                                Rev("s2", "s1", swallow)])
    result = migrate("upgrade")

    assert result.returncode == 1, result.stderr
    [line] = error_lines(result.stderr)
    assert "INVALID index" in line and shown in line, line
    assert version_of(database_url, plugin) == ["s1"]


# -- batch sizes --------------------------------------------------------------------------------

BACKFILL_TABLE = ('op.create_table("events", sa.Column("id", sa.Integer, primary_key=True), '
                  'sa.Column("n", sa.Integer))\n'
                  'op.execute("INSERT INTO events (id) SELECT g FROM generate_series(1, 20000) g")')


@pytest.mark.parametrize(("arguments", "batches"), [
    ("batch_size=500", 40), ("batch_size=5000", 4), ("batch_size=20000", 1)])
def test_an_explicit_batch_size_alone_is_honoured_exactly(
    database_url: str, migrate: Run, tmp_path: Path, json_logs: Any, arguments: str,
    batches: int,
) -> None:
    write_plugin(tmp_path / "plugins", "sized", [
        Rev("b1", None, BACKFILL_TABLE),
        Rev("b2", "b1", f'backfill("events", set="n = id * 2", {arguments})')])
    result = migrate("upgrade")

    assert result.returncode == 0, result.stderr
    sizes = [e["batch_size"] for e in json_logs(result.stderr) if e["event"] == "backfill.batch"]
    size = int(arguments.split("=")[1])
    assert len(sizes) == batches and set(sizes) == {size}
    assert fetch(database_url, "SELECT count(*) FROM sized.events WHERE n = id * 2") == [(20000,)]
    assert fetch(database_url, "SELECT batches_done, status FROM migrator.backfill_progress"
                 ) == [(batches, "done")]


# -- downgrade and dependents ---------------------------------------------------------------------

CORE = Rev("k1", None, 'op.create_table("accounts", sa.Column("id", sa.Integer, '
                       'primary_key=True))', 'op.drop_table("accounts")')
PANELS = Rev("p1", None, 'op.create_table("panels", sa.Column("id", sa.Integer, '
                         'primary_key=True), sa.Column("account_id", sa.Integer, '
                         'sa.ForeignKey("core.accounts.id")))', 'op.drop_table("panels")')


def test_downgrading_a_plugin_others_depend_on_is_refused_naming_them(
    database_url: str, migrate: Run, tmp_path: Path,
) -> None:
    write_plugin(tmp_path / "plugins", "core", [CORE])
    write_plugin(tmp_path / "plugins", "panels", [PANELS], toml='depends_on = ["core"]')
    assert migrate("upgrade").returncode == 0

    refused = migrate("downgrade", "--plugin", "core", "--to", "base")
    assert refused.returncode == 2, refused.stderr
    [line] = error_lines(refused.stderr)
    assert "'core'" in line and "panels" in line and "--cascade" in line, line
    assert version_of(database_url, "core") == ["k1"]
    assert version_of(database_url, "panels") == ["p1"]
    assert [r[1] for r in history(database_url, "core")] == ["up"]


def test_downgrade_cascade_reverts_the_dependents_to_base_first(
    database_url: str, migrate: Run, tmp_path: Path,
) -> None:
    write_plugin(tmp_path / "plugins", "core", [CORE])
    write_plugin(tmp_path / "plugins", "panels", [PANELS], toml='depends_on = ["core"]')
    assert migrate("upgrade").returncode == 0

    cascaded = migrate("downgrade", "--plugin", "core", "--to", "base", "--cascade")
    assert cascaded.returncode == 0, cascaded.stderr
    assert version_of(database_url, "core") == []
    assert version_of(database_url, "panels") == []
    assert not table_exists(database_url, "panels.panels")
    assert not table_exists(database_url, "core.accounts")
    order = fetch(database_url, "SELECT plugin FROM migrator.history WHERE direction = 'down' "
                  "ORDER BY id")
    assert order == [("panels",), ("core",)]


def test_downgrade_dry_run_and_sql_show_the_cascade(
    database_url: str, migrate: Run, tmp_path: Path,
) -> None:
    """--dry-run refuses like the real run without --cascade and shows the dependents'
    reverts first with it; --sql (offline) renders them first with --cascade."""
    write_plugin(tmp_path / "plugins", "core", [CORE])
    write_plugin(tmp_path / "plugins", "panels", [PANELS], toml='depends_on = ["core"]')
    assert migrate("upgrade").returncode == 0

    refused = migrate("downgrade", "--plugin", "core", "--to", "base", "--dry-run")
    assert refused.returncode == 2 and "panels" in error_lines(refused.stderr)[0]
    shown = migrate("downgrade", "--plugin", "core", "--to", "base", "--cascade", "--dry-run",
                    "--format", "json")
    assert shown.returncode == 0, shown.stderr
    document = json.loads(shown.stdout)
    assert [(p["name"], p["from"], p["to"]) for p in document["plugins"]] == [
        ("panels", "p1", None), ("core", "k1", None)]
    assert version_of(database_url, "panels") == ["p1"]  # a dry run changes nothing

    script = migrate("downgrade", "--plugin", "core", "--to", "base", "--cascade", "--sql")
    assert script.returncode == 0, script.stderr
    text = script.stdout
    assert text.index('DROP TABLE panels') < text.index('DROP TABLE accounts')
