"""The plugin example in README.md ("Writing a monitor (plugin)") works as written."""

from __future__ import annotations

import re
from pathlib import Path

from monitors import MonitorSpec
from monitors.pipeline import MonitorPipeline
from monitors.registry import MonitorRegistry

README = Path(__file__).resolve().parents[3] / "README.md"


def readme_plugin_example() -> str:
    section = README.read_text(encoding="utf-8").split("### Writing a monitor (plugin)", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match, "the plugin section has no python example"
    return match.group(1)


async def test_the_readme_plugin_blocks_shouting_through_the_pipeline(metrics):
    namespace: dict[str, object] = {}
    exec(readme_plugin_example(), namespace)
    registry = MonitorRegistry()
    registry.register("shouting", namespace["create"])
    pipeline = MonitorPipeline(
        [MonitorSpec(name="shouting", action="block", threshold=0.6)], metrics=metrics, registry=registry
    )
    await pipeline.start()
    try:
        loud = await pipeline.check("input", ["STOP SHOUTING"], request_id="r1")
        quiet = await pipeline.check("input", ["a calm request"], request_id="r2")
    finally:
        await pipeline.close()
    assert loud.blocked and loud.blocked_by.monitor_id == "shouting"
    assert not quiet.blocked
