"""The two base classes: each is called its own way, and a check of the wrong kind is refused."""

from __future__ import annotations

import importlib
import sys
import textwrap

import pytest

from monitors import AsyncMonitor, Finding, Monitor, MonitorLoadError, MonitorSpec
from monitors.pipeline import MonitorPipeline
from monitors.registry import MonitorRegistry


def test_an_async_check_on_a_monitor_is_refused_naming_async_monitor():
    with pytest.raises(TypeError, match=r"Judge\.check is async: derive from monitors\.AsyncMonitor"):

        class Judge(Monitor):
            async def check(self, texts):
                return []


def test_a_sync_check_on_an_async_monitor_is_refused_naming_monitor():
    with pytest.raises(TypeError, match=r"Regex\.check is a plain def: derive from monitors\.Monitor"):

        class Regex(AsyncMonitor):
            def check(self, texts):
                return []


def test_close_must_match_the_base_class_too():
    with pytest.raises(TypeError, match=r"Leaky\.close is async"):

        class Leaky(Monitor):
            def check(self, texts):
                return []

            async def close(self):
                pass

    with pytest.raises(TypeError, match=r"Leaky\.close is a plain def"):

        class Leaky(AsyncMonitor):  # noqa: F811 - the same name, the other way round
            async def check(self, texts):
                return []

            def close(self):
                pass


def test_inline_is_a_property_set_one_way():
    with pytest.raises(TypeError, match=r"Cheap\.inline must be a property"):

        class Cheap(Monitor):
            inline = True

            def check(self, texts):
                return []

    class Plain(Monitor):
        def check(self, texts):
            return []

    monitor = Plain()
    assert monitor.inline is False
    with pytest.raises(AttributeError):
        monitor.inline = True


def test_a_plugin_with_an_async_check_on_monitor_fails_to_load_with_the_fix(tmp_path, monkeypatch):
    (tmp_path / "wrong_base_plugin.py").write_text(
        textwrap.dedent("""
        from monitors import Finding, Monitor

        class Remote(Monitor):
            async def check(self, texts):
                return [Finding(score=0.0) for _ in texts]

        def create(spec):
            return Remote()
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "wrong_base_plugin", raising=False)
    importlib.invalidate_caches()
    registry = MonitorRegistry()
    registry.register("remote", "wrong_base_plugin:create")
    expected = (
        r"monitor 'remote': importing wrong_base_plugin:create failed: "
        r"TypeError: Remote\.check is async: derive from monitors\.AsyncMonitor"
    )
    with pytest.raises(MonitorLoadError, match=expected):
        registry.build(MonitorSpec(name="remote"))


class Upper(Monitor):
    def __init__(self) -> None:
        self.closed = 0

    def check(self, texts):
        return [Finding(score=1.0 if text.isupper() else 0.0) for text in texts]

    def close(self) -> None:
        self.closed += 1


class RemoteUpper(AsyncMonitor):
    def __init__(self) -> None:
        self.closed = 0

    async def check(self, texts):
        return [Finding(score=1.0 if text.isupper() else 0.0) for text in texts]

    async def close(self) -> None:
        self.closed += 1


async def test_the_pipeline_calls_and_closes_each_kind_its_own_way(metrics):
    built = {"sync": Upper(), "async": RemoteUpper()}
    registry = MonitorRegistry({name: (lambda spec, m=monitor: m) for name, monitor in built.items()})
    pipeline = MonitorPipeline(
        [MonitorSpec(name="sync"), MonitorSpec(name="async")], metrics=metrics, registry=registry
    )
    await pipeline.start()
    try:
        result = await pipeline.check("input", ["LOUD"], request_id="r")
    finally:
        await pipeline.close()
    assert [(d.monitor_id, d.hit, d.error) for d in result.decisions] == [("sync", True, None), ("async", True, None)]
    assert built["sync"].closed == 1 and built["async"].closed == 1
