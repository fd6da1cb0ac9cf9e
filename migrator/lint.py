"""`migrator lint`: lock-unsafe DDL and isolation breaches, found in each revision's SQL.

Every revision is rendered offline (`sql_output`) into a file of its own, headed by the
`lock_timeout` and `search_path` settings migrator really runs (so squawk's timeout rules are
satisfied by them), with its BEGIN/COMMIT as migrator runs it; squawk (the `squawk-cli` wheel)
reads all the files in one process and each of its findings is mapped back to plugin, revision
file and statement. Then migrator's own isolation rules, which no linter has:

- `migrator-cross-schema`: a statement creates, changes, drops or writes an object in a schema
  other than the plugin's own, creates or moves objects into another schema, or sets
  `search_path`; a foreign key may reference the plugin's own schema and those of the plugins
  it `depends_on`, nothing else.
- `migrator-drop-schema`: `DROP SCHEMA`, any schema (its own holds its version table).
- `migrator-undeclared-extension`: `CREATE EXTENSION` of an extension the plugin does not
  declare in `plugin.toml` (`extensions = [...]`, which migrator creates in `public`).

One finding per problem, naming its object (`column orders.region`): squawk's rules that
report the same problem twice (a foreign key without NOT VALID; DROP SCHEMA, also migrator's
rule) are merged. A revision that cannot be rendered offline (it reads results, introspects,
commits...) is skipped and listed as such. A `.squawk.toml` in the migrations directory is
passed to squawk. A baseline file (`--write-baseline`, `--baseline`) accepts known findings
by fingerprint — plugin, revision, rule, object; never line numbers — so only new ones count.

A revision silences a rule with a comment anywhere in its file, which must give a reason (it
may go on over the comment lines right below):

    # migrator-lint: ignore require-concurrent-index-creation -- the table is created above

An opt-out without a reason silences nothing and is itself a finding
(`migrator-opt-out-needs-reason`). Only the upgrade direction is linted: it is what a deploy runs.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Iterable, Sequence
from pathlib import Path

from migrator import sql_scan
from migrator.discovery import Plugin
from migrator.errors import ConfigError
from migrator.lint_findings import (
    BASELINE_VERSION,
    CROSS_SCHEMA,
    DROP_SCHEMA,
    OPT_OUT_NEEDS_REASON,
    SQUAWK_CONFIG,
    UNDECLARED_EXTENSION,
    Finding,
    OptOut,
    Report,
    Skipped,
    Target,
)
from migrator.lint_squawk import merged, run_squawk, squawk_binary
from migrator.plan import PluginPlan
from migrator.sql_objects import object_named
from migrator.sql_output import Statement, render_upgrade

# -- the run ----------------------------------------------------------------------------------


def run(selected: Sequence[Plugin], found: Sequence[Plugin], *, lock_timeout: float,
        squawk: str | None = None, plans: Sequence[PluginPlan] | None = None,
        squawk_config: Path | None = None, baseline: Path | None = None) -> Report:
    """Lint every revision of `selected` (with `plans`, only their pending ones); `found`
    (all plugins) maps dependencies to schemas."""
    schemas = {p.name: p.schema for p in found}
    targets: list[Target] = []
    skipped: list[Skipped] = []
    items = list(plans) if plans is not None else [PluginPlan.build(p, (), None)
                                                   for p in selected]
    for item in items:
        if not item.pending:
            continue
        rendered = render_upgrade(item, lock_timeout=lock_timeout)
        settings = [s.sql for s in rendered.setup if s.sql.startswith("SET ")]
        for revision in rendered.revisions:
            if revision.unrenderable is not None:
                skipped.append(Skipped(item.plugin.name, revision.revision, revision.path,
                                       revision.unrenderable))
                continue
            targets.append(Target(item.plugin, revision, settings, {},
                                   OptOut.read(Path(revision.path))))
    findings = run_squawk(targets, squawk or squawk_binary(), squawk_config) if targets else []
    for target in targets:
        allowed = {target.plugin.schema, *(schemas.get(d, d) for d in target.plugin.depends_on)}
        findings += _isolation(target, allowed)
        findings += _extensions(target)
    kept, silenced = _apply_opt_outs(targets, merged(findings))
    accepted = read_baseline(baseline) if baseline is not None else set()
    return Report(plugins=tuple(p.name for p in selected), revisions=len(targets),
                  findings=tuple(f for f in kept if f.fingerprint not in accepted),
                  silenced=tuple(silenced), skipped=tuple(skipped),
                  baselined=tuple(f for f in kept if f.fingerprint in accepted),
                  squawk_config=str(squawk_config) if squawk_config else None)


def squawk_config_in(migrations_dir: Path) -> Path | None:
    """The `.squawk.toml` of the migrations directory, when there is one."""
    candidate = migrations_dir / SQUAWK_CONFIG
    return candidate if candidate.is_file() else None


# -- baselines ----------------------------------------------------------------------------------


def write_baseline(path: Path, findings: Iterable[Finding]) -> int:
    """Accept `findings` as known: one entry per fingerprint, sorted, for a stable diff."""
    entries = sorted({f.fingerprint: f for f in findings}.items())
    document = {"migrator_lint_baseline": BASELINE_VERSION, "findings": [
        {"plugin": f.plugin, "revision": f.revision, "rule": f.rule, "object": f.object,
         "message": f.message} for _, f in entries]}
    try:
        path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot write the lint baseline {path}: {exc.strerror}") from None
    return len(entries)


def read_baseline(path: Path) -> set[tuple[str, str, str, str]]:
    """The fingerprints a baseline file accepts."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        entries = document["findings"]
        return {(str(e["plugin"]), str(e["revision"]), str(e["rule"]), str(e.get("object") or ""))
                for e in entries}
    except OSError as exc:
        raise ConfigError(f"cannot read the lint baseline {path}: {exc.strerror}; write one "
                          "with: migrator lint --write-baseline FILE") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path} is not a migrator lint baseline ({exc!s}); write one with: "
                          "migrator lint --write-baseline FILE") from None


def _isolation(target: Target, allowed: set[str]) -> list[Finding]:
    own_schema = target.plugin.schema
    findings: list[Finding] = []

    def finding(rule: str, number: int, statement: Statement, message: str, help: str,
                what: str | None = None) -> None:
        findings.append(Finding(
            plugin=target.plugin.name, revision=target.revision.revision,
            file=target.revision.path, statement=number, sql=statement.sql, rule=rule,
            source="migrator", message=message, help=help,
            object=what or object_named(statement.sql)))

    for number, statement in enumerate(target.revision.own, start=1):
        found = sql_scan.analyze(statement.sql)
        for schema in found.dropped_schemas:
            finding(DROP_SCHEMA, number, statement, f"DROP SCHEMA {schema}: dropping a schema "
                    "destroys every object in it (a plugin's own holds its version table)",
                    "drop the plugin's tables one by one; migrator never drops schemas",
                    f"schema {schema}")
        others = sorted({str(n) for n in found.changes if n.schema and n.schema != own_schema}
                        | {s for s in found.schemas if s != own_schema})
        if others:
            finding(CROSS_SCHEMA, number, statement,
                    f"{found.verb} names {', '.join(others)}, outside the plugin's schema "
                    f"{own_schema!r}", "a plugin changes only its own schema (migrator sets "
                    "search_path to it: leave names unqualified); the owning plugin must make "
                    "this change")
        foreign = sorted({str(n) for n in found.references if n.schema and n.schema
                          not in allowed})
        if foreign:
            finding(CROSS_SCHEMA, number, statement,
                    f"a foreign key references {', '.join(foreign)}, in a schema of no plugin "
                    f"that {target.plugin.name!r} depends on",
                    "add the owning plugin to depends_on in plugin.toml (it is migrated first), "
                    "or drop the reference")
        if found.sets_search_path:
            finding(CROSS_SCHEMA, number, statement, "the revision sets search_path, which "
                    "sends its unqualified DDL to another schema",
                    "remove it: migrator sets search_path to the plugin's schema")
    return findings


def declared_extensions(plugin: Plugin) -> tuple[str, ...]:
    """The plugin's `extensions`: its attribute, else read leniently from its plugin.toml."""
    declared = getattr(plugin, "extensions", None)
    if declared is not None:
        return tuple(declared)
    try:
        with (plugin.path / "plugin.toml").open("rb") as file:
            value = tomllib.load(file).get("extensions", ())
    except (OSError, tomllib.TOMLDecodeError):
        return ()
    return tuple(str(v) for v in value) if isinstance(value, list) else ()


def _extensions(target: Target) -> list[Finding]:
    declared = set(declared_extensions(target.plugin))
    findings = []
    for number, statement in enumerate(target.revision.own, start=1):
        for name in sql_scan.analyze(statement.sql).extensions:
            if name in declared:
                continue
            findings.append(Finding(
                plugin=target.plugin.name, revision=target.revision.revision,
                file=target.revision.path, statement=number, sql=statement.sql,
                rule=UNDECLARED_EXTENSION, source="migrator", object=f"extension {name}",
                message=f"the revision creates extension {name!r}, which plugin "
                        f"{target.plugin.name!r} does not declare; run in the plugin's "
                        "search_path, it would land in the plugin's schema, out of the other "
                        "plugins' reach",
                help=f'declare it in plugin.toml (extensions = ["{name}"]): migrator creates '
                     "it in public before the plugin's revisions; then drop the statement"))
    return findings


def _apply_opt_outs(targets: list[Target], findings: list[Finding]
                    ) -> tuple[list[Finding], list[tuple[Finding, str]]]:
    by_revision = {(t.plugin.name, t.revision.revision): t for t in targets}
    kept: list[Finding] = []
    silenced: list[tuple[Finding, str]] = []
    for target in targets:
        for opt_out in target.opt_outs:
            if opt_out.reason is None:
                kept.append(Finding(
                    plugin=target.plugin.name, revision=target.revision.revision,
                    file=target.revision.path, statement=None, sql=None,
                    rule=OPT_OUT_NEEDS_REASON, source="migrator",
                    message=f"line {opt_out.line}: the opt-out of {', '.join(opt_out.rules)} "
                            "gives no reason, so it silences nothing",
                    help="say why the statement is safe: # migrator-lint: ignore <rule> -- "
                         "<reason>"))
    for item in findings:
        target = by_revision[(item.plugin, item.revision)]
        reason = next((o.reason for o in target.opt_outs
                       if o.reason is not None and item.rule in o.rules), None)
        if reason is None:
            kept.append(item)
        else:
            silenced.append((item, reason))
    order = {key: i for i, key in enumerate(by_revision)}
    kept.sort(key=lambda f: (order[(f.plugin, f.revision)], f.statement or 0))
    return kept, silenced
