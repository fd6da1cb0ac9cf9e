"""`migrator lint`: squawk over each revision's rendered SQL, plus migrator's isolation rules,
each finding mapped back to plugin, revision file and statement; exit 5 on findings."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from helpers import settings_for
from treebuilder import Rev, write_plugin

from migrator import discovery, lint, lint_squawk, previews, runs
from migrator.config import Settings
from migrator.errors import ConfigError, FindingsReported

REPO_ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_PLATFORM = REPO_ROOT / "plugin_migrations"

def findings_by_file(report: lint.Report) -> dict[str, list[tuple[int | None, str]]]:
    found: dict[str, list[tuple[int | None, str]]] = {}
    for finding in report.findings:
        found.setdefault(Path(finding.file).name, []).append((finding.statement, finding.rule))
    return found


def test_lint_flags_the_classic_hazards(tree: Any) -> None:
    """A NOT NULL column without default, CREATE INDEX without CONCURRENTLY, a validated
    foreign key, a column type change, DDL in another plugin's schema, a reference to a plugin
    not depended on, DROP SCHEMA, and a reasonless opt-out are each found once, with their
    plugin, revision file, statement and object (rules reporting one problem twice merged);
    the table created and indexed in one revision is not."""
    trees = tree("lint_hazards")
    report = previews.lint(Settings(migrations_dir=trees))

    assert report.plugins == ("core", "shop") and report.revisions == 9
    assert findings_by_file(report) == {
        "0002_add_required_region.py": [(1, "adding-required-field")],
        "0003_index_region.py": [(1, "require-concurrent-index-creation")],
        "0004_reference_accounts.py": [(1, "adding-foreign-key-constraint")],
        "0005_amount_to_decimal.py": [(1, "changing-column-type")],
        "0006_change_core.py": [(1, "migrator-cross-schema"), (2, "migrator-cross-schema")],
        "0007_drop_legacy_schema.py": [(1, "migrator-drop-schema")],
        "0008_unreasoned_opt_out.py": [(None, "migrator-opt-out-needs-reason"),
                                       (1, "require-concurrent-index-creation")],
    }
    by_rule = {(Path(f.file).name, f.rule): f for f in report.findings}
    required = by_rule[("0002_add_required_region.py", "adding-required-field")]
    assert (required.plugin, required.revision, required.source) == ("shop", "5a0700000002",
                                                                     "squawk")
    assert required.sql == "ALTER TABLE orders ADD COLUMN region TEXT NOT NULL;"
    assert required.object == "column orders.region"
    foreign_key = by_rule[("0004_reference_accounts.py", "adding-foreign-key-constraint")]
    assert foreign_key.object == "constraint fk_orders_account_id on orders"
    assert foreign_key.also == ("constraint-missing-not-valid",)
    drop = by_rule[("0007_drop_legacy_schema.py", "migrator-drop-schema")]
    assert (drop.object, drop.also) == ("schema legacy", ("ban-drop-schema",))
    assert by_rule[("0003_index_region.py", "require-concurrent-index-creation")].object == (
        "index ix_orders_region on orders")
    cross = [f for f in report.findings if f.rule == "migrator-cross-schema"]
    assert cross[0].message == ("ALTER TABLE names core.accounts, outside the plugin's schema "
                                "'shop'")
    assert "billing.invoices" in cross[1].message and "depends on" in cross[1].message
    # core is a dependency of shop: referencing it is no isolation finding.
    assert not any(f.rule.startswith("migrator-") for f in report.findings
                   if Path(f.file).name == "0004_reference_accounts.py")
    with pytest.raises(FindingsReported, match=r"lint: 9 finding\(s\) in 7 revision\(s\)"):
        previews.lint_findings(report)


def test_lint_passes_safe_revisions_and_honours_reasoned_opt_outs(tree: Any) -> None:
    """Nullable and constant-default columns, a concurrent index in an autocommit block, a
    NOT VALID foreign key validated in its own revision: no finding; a reasoned opt-out
    silences its rule and is reported with its reason."""
    report = previews.lint(Settings(migrations_dir=tree("lint_safe")))

    assert report.findings == ()
    [(silenced, reason)] = report.silenced
    assert (silenced.rule, Path(silenced.file).name) == ("constraint-missing-not-valid",
                                                         "0006_check_amount.py")
    assert reason == ("orders holds a few hundred rows (a test fixture), so the validating "
                      "scan under the lock takes milliseconds")
    previews.lint_findings(report)  # nothing found: no exit 5


def test_the_example_platform_lints_clean(run_cli: Any) -> None:
    """plugin_migrations/ has no finding; its one opt-out gives its reason; its Python
    backfill, which cannot be rendered offline, is skipped and said so."""
    result = run_cli("--migrations-dir", EXAMPLE_PLATFORM, "lint", "--format", "json")

    assert result.returncode == 0, result.stdout + result.stderr
    document = json.loads(result.stdout)
    assert document["findings"] == []
    assert document["revisions_checked"] == sum(
        len(p.revisions) for p in discovery.discover(EXAMPLE_PLATFORM, entry_points=False)) - 1
    [skipped] = document["skipped"]
    assert (skipped["plugin"], skipped["why"]) == (
        "panels", "its backfill 'panels_canonical_drug_names' uses transform=canonical_names, a "
        "Python function with no SQL form")
    assert [(s["plugin"], s["rule"]) for s in document["silenced"]] == [
        ("analysis_results", "constraint-missing-not-valid")]
    assert "require-statement-timeout" in document["excluded_rules"]


def test_lint_cli_exits_5_and_names_where(tree: Any, run_cli: Any) -> None:
    """`migrator lint --plugin shop` prints each finding with its file, statement and rule,
    exits 5, and needs no database; --format json is one document with the same findings."""
    trees = tree("lint_hazards")
    result = run_cli("--migrations-dir", trees, "lint", "--plugin", "shop")

    assert result.returncode == 5, result.stderr
    lines = result.stdout.splitlines()
    region = str(trees / "shop" / "versions" / "0002_add_required_region.py")
    assert any(line.startswith(f"{region} statement 1: adding-required-field "
                               "(column orders.region): ")
               and line.endswith("[shop 5a0700000002]") for line in lines)
    assert "    ALTER TABLE orders ADD COLUMN region TEXT NOT NULL;" in lines
    assert lines[-1] == ("lint: 9 finding(s), 0 silenced by a reasoned opt-out, 0 accepted by "
                         "the baseline; 8 revision(s) of 1 plugin(s) checked, 0 skipped")
    assert "migrator: error: lint: 9 finding(s)" in result.stderr

    as_json = run_cli("--migrations-dir", trees, "lint", "--plugin", "shop", "--format", "json")
    assert as_json.returncode == 5
    document = json.loads(as_json.stdout)
    assert len(document["findings"]) == 9
    assert set(document["findings"][0]) == {"plugin", "revision", "file", "statement", "sql",
                                            "rule", "object", "also", "source", "message",
                                            "help"}


def test_opt_out_comments_are_read_with_their_reasons(tmp_path: Path) -> None:
    """An opt-out names one or more rules and a reason after `--`, which may go on over the
    comment lines below it; without `--` it has no reason."""
    path = tmp_path / "0001_x.py"
    path.write_text(
        "def upgrade() -> None:\n"
        "    # migrator-lint: ignore changing-column-type, adding-required-field -- the table\n"
        "    #   is empty: it was created in the previous revision\n"
        "    op.execute('...')\n"
        "    # migrator-lint: ignore require-concurrent-index-creation\n")

    first, second = lint.OptOut.read(path)

    assert first == lint.OptOut(
        rules=("changing-column-type", "adding-required-field"),
        reason="the table is empty: it was created in the previous revision", line=2)
    assert second == lint.OptOut(rules=("require-concurrent-index-creation",), reason=None,
                                 line=5)


def test_missing_squawk_is_a_configuration_error(tree: Any, monkeypatch: pytest.MonkeyPatch,
                                                 tmp_path: Path) -> None:
    """Without squawk, lint exits 2 saying how to install it."""
    monkeypatch.setattr(lint_squawk.sysconfig, "get_path", lambda _name: str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(lint.ConfigError, match=r"pip install 'migrator\[lint\]'"):
        previews.lint(Settings(migrations_dir=tree("lint_safe")))


def add_revision(versions: Path, revision: str, down: str, body: str) -> None:
    (versions / f"{revision}.py").write_text(
        f'"""{revision}"""\n\nfrom alembic import op\n\nrevision = "{revision}"\n'
        f'down_revision = "{down}"\nbranch_labels = None\ndepends_on = None\n\n\n'
        f"def upgrade() -> None:\n    {body}\n\n\ndef downgrade() -> None:\n    pass\n")


def test_baseline_accepts_known_findings_by_fingerprint(tree: Any, run_cli: Any,
                                                        tmp_path: Path) -> None:
    """--write-baseline accepts today's findings (exit 0); with --baseline they no longer
    count, also after edits that move their lines; a new finding still exits 5, alone."""
    trees = tree("lint_hazards")
    baseline = tmp_path / "lint-baseline.json"
    written = run_cli("--migrations-dir", trees, "lint", "--write-baseline", baseline)
    assert written.returncode == 0, written.stderr
    assert written.stdout.strip() == f"lint: 9 finding(s) accepted in {baseline}"
    entries = json.loads(baseline.read_text())["findings"]
    assert {"plugin": "shop", "revision": "5a0700000002", "rule": "adding-required-field",
            "object": "column orders.region"} in [
        {k: e[k] for k in ("plugin", "revision", "rule", "object")} for e in entries]

    region = trees / "shop" / "versions" / "0002_add_required_region.py"
    region.write_text("# moved down by a comment\n\n" + region.read_text())
    clean = run_cli("--migrations-dir", trees, "lint", "--baseline", baseline)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert clean.stdout.splitlines()[-1].startswith(
        "lint: 0 finding(s), 0 silenced by a reasoned opt-out, 9 accepted by the baseline")

    add_revision(trees / "shop" / "versions", "5a0700000009", "5a0700000008",
                 'op.execute("CREATE INDEX ix_orders_created ON orders (id)")')
    new = run_cli("--migrations-dir", trees, "lint", "--baseline", baseline, "--format", "json")
    assert new.returncode == 5
    [finding] = json.loads(new.stdout)["findings"]
    assert (finding["revision"], finding["rule"], finding["object"]) == (
        "5a0700000009", "require-concurrent-index-creation", "index ix_orders_created on orders")

    broken = tmp_path / "broken.json"
    broken.write_text("[]")
    refused = run_cli("--migrations-dir", trees, "lint", "--baseline", broken)
    assert refused.returncode == 2 and "is not a migrator lint baseline" in refused.stderr


def test_squawk_toml_in_the_migrations_directory_is_respected(tree: Any) -> None:
    """A `.squawk.toml` beside the plugin trees is squawk's configuration: a rule it excludes
    is not reported."""
    trees = tree("lint_hazards")
    (trees / ".squawk.toml").write_text('excluded_rules = ["adding-required-field"]\n')

    report = previews.lint(Settings(migrations_dir=trees))

    assert report.squawk_config == str(trees / ".squawk.toml")
    assert "adding-required-field" not in {f.rule for f in report.findings}
    assert "require-concurrent-index-creation" in {f.rule for f in report.findings}


def test_undeclared_extension_is_a_finding(tree: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """`CREATE EXTENSION` in a revision is a finding naming the extension unless the plugin
    declares it (`extensions = [...]` in plugin.toml)."""
    trees = tree("lint_safe")
    versions = trees / "shop" / "versions"
    head = max(p.name for p in versions.glob("*.py"))
    down = re.search(r'^revision(?:: str)? = "(\w+)"', (versions / head).read_text(), re.M)
    assert down is not None
    add_revision(versions, "5a07e0000001", down.group(1),
                 'op.execute("CREATE EXTENSION IF NOT EXISTS citext")')

    [finding] = previews.lint(Settings(migrations_dir=trees)).findings
    assert (finding.rule, finding.object, finding.revision) == (
        "migrator-undeclared-extension", "extension citext", "5a07e0000001")
    assert 'extensions = ["citext"]' in (finding.help or "")

    # Until discovery reads `extensions`, lint reads plugin.toml itself.
    monkeypatch.setattr(discovery, "PLUGIN_TOML_KEYS", (*discovery.PLUGIN_TOML_KEYS,
                                                         "extensions"))
    (trees / "shop" / "plugin.toml").write_text('extensions = ["citext"]\n')
    assert previews.lint(Settings(migrations_dir=trees)).findings == ()


def test_unrenderable_revisions_are_skipped_and_named(tree: Any) -> None:
    """Lint checks every revision it can render and lists the ones it cannot, with why."""
    report = previews.lint(Settings(migrations_dir=tree("offline_unrenderable")))

    assert report.revisions == 2
    assert [(s.revision, s.why.split(" (")[0]) for s in report.skipped][:2] == [
        ("un000002", "it reads a query's result"), ("un000003", "it reads a query's result")]
    assert len(report.skipped) == 7


def test_pending_lints_only_what_the_database_has_not_applied(
    tree: Any, database_url: str
) -> None:
    """--pending reads the current revisions and lints only what a deploy would run."""
    trees = tree("lint_hazards")
    settings = settings_for(database_url, trees)
    runs.upgrade(settings, ["shop"], to="5a0700000002")

    report = previews.lint(settings, ["shop"], pending=True)

    assert report.revisions == 6
    assert "0002_add_required_region.py" not in findings_by_file(report)
    assert "0003_index_region.py" in findings_by_file(report)
    with pytest.raises(ConfigError, match="database"):
        previews.lint(Settings(migrations_dir=trees), pending=True)


def test_a_dropped_index_is_named_as_an_index(tmp_path: Path) -> None:
    """`op.drop_index(...)` renders `DROP INDEX ix` (no table in the statement): its finding
    names `index ix`, not `table ix` (seen on real trees that drop old indexes)."""
    root = tmp_path / "plugins"
    write_plugin(root, "shop", [
        Rev("a1", None, "op.execute('CREATE TABLE orders (id int, region text)')"),
        Rev("a2", "a1", "op.drop_index('ix_orders_region', table_name='orders')"),
        Rev("a3", "a2", "op.execute('DROP INDEX IF EXISTS shop.ix_old')")])
    report = previews.lint(Settings(migrations_dir=root))
    named = {(f.revision, f.object) for f in report.findings
             if f.rule == "require-concurrent-index-deletion"}
    assert named == {("a2", "index ix_orders_region"), ("a3", "index shop.ix_old")}
