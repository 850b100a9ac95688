from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from monitors.base import Finding, Monitor, MonitorLoadError
from monitors.config import MonitorSpec
from monitors.registry import BUILTIN_FACTORIES, MonitorRegistry

ROOT = Path(__file__).resolve().parents[3]
PLUGIN = ROOT / "tests" / "fixtures" / "taxgate_plugin_example"


class Constant(Monitor):
    def check(self, texts):
        return [Finding(score=0.25) for _ in texts]


def test_registered_factory_builds_with_its_spec():
    seen = []
    registry = MonitorRegistry()
    registry.register("constant", lambda spec: seen.append(spec) or Constant())
    spec = MonitorSpec(name="constant", id="c1")
    assert isinstance(registry.build(spec), Constant)
    assert seen == [spec]


def test_unknown_name_lists_known_ones():
    registry = MonitorRegistry({"a": lambda spec: Constant(), "b": lambda spec: Constant()})
    with pytest.raises(MonitorLoadError, match=r"unknown monitor 'nope'; known monitors: a, b"):
        registry.build(MonitorSpec(name="nope"))


def test_factory_failures_become_load_errors():
    registry = MonitorRegistry()
    registry.register("boom", lambda spec: 1 / 0)
    registry.register("wrong", lambda spec: object())
    with pytest.raises(MonitorLoadError, match="'boom' failed to build: ZeroDivisionError"):
        registry.build(MonitorSpec(name="boom"))
    with pytest.raises(MonitorLoadError, match="returned object, not a Monitor"):
        registry.build(MonitorSpec(name="wrong"))


def test_builtins_are_known_without_installing_taxgate():
    registry = MonitorRegistry.from_entry_points()
    for name in BUILTIN_FACTORIES:
        assert name in registry


def test_builtin_targets_match_pyproject():
    import tomllib

    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]["taxgate.monitors"]
    assert declared == BUILTIN_FACTORIES


def test_entry_points_load_lazily():
    # Building the pii monitor must not import torch or detoxify (seconds, and an optional extra).
    code = (
        "import sys\n"
        "from monitors.registry import MonitorRegistry\n"
        "from monitors.config import MonitorSpec\n"
        "MonitorRegistry.from_entry_points().build(MonitorSpec(name='pii'))\n"
        "heavy = sorted(m for m in ('torch', 'detoxify', 'transformers', 'profanity_check') if m in sys.modules)\n"
        "print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_missing_module_is_a_load_error():
    registry = MonitorRegistry()
    registry.register("ghost", "no_such_module_xyz:create")
    registry.register("typo", "monitors.builtin.pii:craete")
    with pytest.raises(MonitorLoadError, match="monitors.builtin.pii:craete not found"):
        registry.build(MonitorSpec(name="typo"))
    with pytest.raises(MonitorLoadError, match="cannot import no_such_module_xyz:create"):
        registry.build(MonitorSpec(name="ghost"))


def test_an_installed_plugin_is_found_by_entry_point(tmp_path, monkeypatch):
    """Install the example plugin for real (pip --target) and build its monitor by name."""
    source = tmp_path / "src"
    shutil.copytree(PLUGIN, source)  # building writes build/ and egg-info next to the sources
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--quiet",
            "--target",
            str(target),
            str(source),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    monkeypatch.syspath_prepend(str(target))
    monkeypatch.delitem(sys.modules, "taxgate_plugin_example", raising=False)
    importlib.invalidate_caches()

    registry = MonitorRegistry.from_entry_points()
    assert "shouting" in registry
    monitor = registry.build(MonitorSpec(name="shouting", min_letters=3))
    quiet, loud = monitor.check(["hello there", "STOP SHOUTING"])
    assert quiet.score == 0.0 and loud.score == 1.0
    with pytest.raises(MonitorLoadError, match="min_leters"):
        registry.build(MonitorSpec(name="shouting", min_leters=3))
