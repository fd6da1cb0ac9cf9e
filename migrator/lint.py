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
import re
import shutil
import subprocess
import sysconfig
import tempfile
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from migrator import sql_scan
from migrator.discovery import Plugin
from migrator.errors import ConfigError, MigratorError
from migrator.plan import PluginPlan
from migrator.sql_output import BEGIN, COMMIT, RenderedRevision, Statement, render_upgrade

CROSS_SCHEMA = "migrator-cross-schema"
DROP_SCHEMA = "migrator-drop-schema"
UNDECLARED_EXTENSION = "migrator-undeclared-extension"
OPT_OUT_NEEDS_REASON = "migrator-opt-out-needs-reason"
SQUAWK_CONFIG = ".squawk.toml"
BASELINE_VERSION = 1

# Rules that report one problem together: on one statement and object, the first is kept and
# the others are listed with it (`also`).
SAME_PROBLEM: tuple[tuple[str, ...], ...] = (
    ("adding-foreign-key-constraint", "constraint-missing-not-valid"),
    (DROP_SCHEMA, "ban-drop-schema"),
)

# squawk rules migrator turns off, and why (README, "Reviewing migrations", lists them too).
SQUAWK_EXCLUDED: Mapping[str, str] = {
    "require-statement-timeout": (
        "migrator sets lock_timeout, not statement_timeout, for schema revisions: a concurrent "
        "index build or a constraint validation may rightly run long without blocking anyone; "
        "the statements that block while they run long are flagged by their own rules"),
}

_OPT_OUT = re.compile(
    r"^\s*#\s*migrator-lint:\s*ignore\s+(?P<rules>[A-Za-z0-9_\-]+(?:\s*,\s*[A-Za-z0-9_\-]+)*)"
    r"\s*(?:--\s*(?P<reason>.*?))?\s*$", re.M)
_CONTINUATION = re.compile(r"^\s*#\s*(\S.*)$")


@dataclass(frozen=True, slots=True)
class Finding:
    plugin: str
    revision: str
    file: str  # the revision file, as discovered
    statement: int | None  # 1-based among the revision's own statements; None: the revision
    sql: str | None
    rule: str
    source: str  # squawk | migrator
    message: str
    help: str | None = None
    object: str | None = None  # what it is about: "column orders.region", "index ix on t"
    also: tuple[str, ...] = ()  # other rules that reported the same problem

    @property
    def fingerprint(self) -> tuple[str, str, str, str]:
        """What a baseline accepts it by: stable across edits that move lines."""
        return (self.plugin, self.revision, self.rule, self.object or "")

    def as_dict(self) -> dict[str, Any]:
        return {"plugin": self.plugin, "revision": self.revision, "file": self.file,
                "statement": self.statement, "sql": self.sql, "rule": self.rule,
                "object": self.object, "also": list(self.also),
                "source": self.source, "message": self.message, "help": self.help}


@dataclass(frozen=True, slots=True)
class Skipped:
    """A revision lint could not check: it cannot be rendered offline."""

    plugin: str
    revision: str
    file: str
    why: str

    def as_dict(self) -> dict[str, Any]:
        return {"plugin": self.plugin, "revision": self.revision, "file": self.file,
                "why": self.why}


@dataclass(frozen=True, slots=True)
class OptOut:
    rules: tuple[str, ...]
    reason: str | None
    line: int

    @classmethod
    def read(cls, path: Path) -> list[OptOut]:
        """The opt-outs in a revision file; a reason may go on over the comment lines below."""
        text = path.read_text(encoding="utf-8")
        found = []
        for match in _OPT_OUT.finditer(text):
            reason = (match.group("reason") or "").strip()
            if reason:
                for line in text[match.end():].lstrip("\n").splitlines():
                    more = _CONTINUATION.match(line)
                    if more is None or _OPT_OUT.match(line):
                        break
                    reason += " " + more.group(1).strip()
            found.append(cls(rules=tuple(r.strip() for r in match.group("rules").split(",")),
                             reason=reason or None, line=text.count("\n", 0, match.start()) + 1))
        return found


@dataclass(frozen=True, slots=True)
class Report:
    plugins: tuple[str, ...]
    revisions: int
    findings: tuple[Finding, ...]
    silenced: tuple[tuple[Finding, str], ...] = ()  # with the opt-out's reason
    excluded_rules: Mapping[str, str] = field(default_factory=lambda: dict(SQUAWK_EXCLUDED))
    skipped: tuple[Skipped, ...] = ()
    baselined: tuple[Finding, ...] = ()  # accepted by the baseline file
    squawk_config: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"plugins": list(self.plugins), "revisions_checked": self.revisions,
                "findings": [f.as_dict() for f in self.findings],
                "silenced": [{**f.as_dict(), "reason": reason} for f, reason in self.silenced],
                "baselined": [f.as_dict() for f in self.baselined],
                "skipped": [s.as_dict() for s in self.skipped],
                "squawk_config": self.squawk_config,
                "excluded_rules": dict(self.excluded_rules)}

    def summary(self) -> str:
        where = sorted({f"{f.plugin} {f.revision}" for f in self.findings})
        return (f"lint: {len(self.findings)} finding(s) in {len(where)} revision(s) "
                f"({', '.join(where)}); fix them, or silence a rule in the revision with "
                "`# migrator-lint: ignore <rule> -- <reason>` (or accept the known ones: "
                "migrator lint --write-baseline FILE, then --baseline FILE)")


# -- the run ----------------------------------------------------------------------------------


@dataclass(slots=True)
class _Target:
    plugin: Plugin
    revision: RenderedRevision
    settings: list[str]  # the SET statements of migrator's session setup for the plugin
    lines: dict[int, int]  # 0-based line in the file → 1-based own-statement number
    opt_outs: list[OptOut]


def run(selected: Sequence[Plugin], found: Sequence[Plugin], *, lock_timeout: float,
        squawk: str | None = None, plans: Sequence[PluginPlan] | None = None,
        squawk_config: Path | None = None, baseline: Path | None = None) -> Report:
    """Lint every revision of `selected` (with `plans`, only their pending ones); `found`
    (all plugins) maps dependencies to schemas."""
    schemas = {p.name: p.schema for p in found}
    targets: list[_Target] = []
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
            targets.append(_Target(item.plugin, revision, settings, {},
                                   OptOut.read(Path(revision.path))))
    findings = _squawk(targets, squawk or squawk_binary(), squawk_config) if targets else []
    for target in targets:
        allowed = {target.plugin.schema, *(schemas.get(d, d) for d in target.plugin.depends_on)}
        findings += _isolation(target, allowed)
        findings += _extensions(target)
    kept, silenced = _apply_opt_outs(targets, _merged(findings))
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


def squawk_binary() -> str:
    """The `squawk` of this environment (the squawk-cli wheel's), else the one on PATH."""
    candidate = Path(sysconfig.get_path("scripts")) / "squawk"
    if candidate.is_file():
        return str(candidate)
    on_path = shutil.which("squawk")
    if on_path:
        return on_path
    raise ConfigError("migrator lint needs squawk, which is not installed; install it with: "
                      "pip install 'migrator[lint]' (the squawk-cli wheel)")


def _lint_file(target: _Target) -> str:
    """The revision as squawk reads it: migrator's session settings (lock_timeout,
    search_path), then BEGIN/COMMIT and the revision's own statements (the version stamp and
    history row are migrator's)."""
    lines = list(target.settings)
    number = 0
    for statement in target.revision.statements:
        if statement.kind in (BEGIN, COMMIT) or statement.own:
            if statement.own:
                number += 1
                for offset in range(statement.sql.count("\n") + 1):
                    target.lines[len(lines) + offset] = number
            lines += statement.sql.split("\n")
    return "\n".join(lines) + "\n"


def _squawk(targets: list[_Target], binary: str, config: Path | None = None) -> list[Finding]:
    texts: dict[str, list[str]] = {}
    with tempfile.TemporaryDirectory(prefix="migrator-lint-") as tmp:
        by_file: dict[str, _Target] = {}
        for target in targets:
            relative = f"{target.plugin.name}/{Path(target.revision.file).stem}.sql"
            path = Path(tmp) / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            text = _lint_file(target)
            path.write_text(text, encoding="utf-8")
            by_file[relative] = target
            texts[relative] = text.split("\n")
        command = [binary, "--reporter", "json", "--no-error-on-unmatched-pattern",
                   *(["--config", str(config.resolve())] if config else []),
                   *(f"--exclude={rule}" for rule in (*SQUAWK_EXCLUDED,
                                                       *_config_excluded(config))), *by_file]
        try:
            result = subprocess.run(command, cwd=tmp, capture_output=True, text=True,
                                    check=False, timeout=600)
        except OSError as exc:
            raise ConfigError(f"cannot run squawk ({binary}): {exc.strerror}; reinstall it "
                              "with: pip install 'migrator[lint]'") from None
        try:
            reported = json.loads(result.stdout or "[]")
        except ValueError:
            reported = None
        if not isinstance(reported, list):
            raise MigratorError(
                f"squawk exited {result.returncode} without a JSON report: "
                f"{(result.stderr or result.stdout).strip()[:500]}; check the squawk-cli install")
    findings = []
    for item in reported:
        target = by_file[item["file"]]
        number = target.lines.get(int(item.get("line", -1)))
        own = target.revision.own
        statement = own[number - 1].sql if number else None
        findings.append(Finding(
            plugin=target.plugin.name, revision=target.revision.revision,
            file=target.revision.path, statement=number, sql=statement,
            rule=str(item.get("rule_name")), source="squawk",
            message=str(item.get("message", "")).strip(), help=item.get("help"),
            object=sql_scan.object_named(statement, _span(texts[item["file"]], item))
            if statement else None))
    return findings


def _config_excluded(config: Path | None) -> list[str]:
    """The `excluded_rules` of a `.squawk.toml`: squawk drops them when `--exclude` is given
    on its command line, so migrator passes them along with its own."""
    if config is None:
        return []
    try:
        with config.open("rb") as file:
            rules = tomllib.load(file).get("excluded_rules", [])
    except OSError as exc:
        raise ConfigError(f"cannot read {config}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{config} is not valid TOML ({exc}); fix it") from None
    return [str(rule) for rule in rules] if isinstance(rules, list) else []


def _span(lines: list[str], item: Mapping[str, Any]) -> str | None:
    """The text a squawk finding points at (its line and column range)."""
    try:
        first, last = int(item["line"]), int(item.get("line_end", item["line"]))
        start, end = int(item.get("column", 0)), int(item.get("column_end", 0))
    except (KeyError, TypeError, ValueError):
        return None
    if not 0 <= first <= last < len(lines):
        return None
    if first == last:
        return lines[first][start:end] or None
    return "\n".join([lines[first][start:], *lines[first + 1:last], lines[last][:end]])


def _merged(findings: list[Finding]) -> list[Finding]:
    """One finding per problem: the same rule twice on one object, or rules of one family
    (`SAME_PROBLEM`) on one statement, become the first of them."""
    family = {rule: group for group in SAME_PROBLEM for rule in group}
    kept: list[Finding] = []
    index: dict[tuple[Any, ...], int] = {}
    for item in findings:
        group = family.get(item.rule, (item.rule,))
        key = (item.plugin, item.revision, item.statement, group,
               item.object if item.rule not in family else None)
        if key in index:
            first = kept[index[key]]
            if item.rule != first.rule and item.rule not in first.also:
                # The family's first rule leads (migrator's own, or the more specific one).
                lead, other = (item, first) if group.index(item.rule) < group.index(
                    first.rule) else (first, item)
                kept[index[key]] = replace(lead, also=(*lead.also, other.rule, *other.also),
                                           object=lead.object or other.object)
            continue
        index[key] = len(kept)
        kept.append(item)
    return kept


def _isolation(target: _Target, allowed: set[str]) -> list[Finding]:
    own_schema = target.plugin.schema
    findings: list[Finding] = []

    def finding(rule: str, number: int, statement: Statement, message: str, help: str,
                what: str | None = None) -> None:
        findings.append(Finding(
            plugin=target.plugin.name, revision=target.revision.revision,
            file=target.revision.path, statement=number, sql=statement.sql, rule=rule,
            source="migrator", message=message, help=help,
            object=what or sql_scan.object_named(statement.sql)))

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


def _extensions(target: _Target) -> list[Finding]:
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


def _apply_opt_outs(targets: list[_Target], findings: list[Finding]
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
