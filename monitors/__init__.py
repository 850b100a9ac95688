"""Safety monitors: a library that scores texts. It knows nothing of HTTP or the gateway.

What a monitor plugin needs is importable from here (``tests/unit/monitors/
test_exported_members.py`` pins the list); see ``monitors/base.py`` for the contract.
"""

from monitors.base import AsyncMonitor, Finding, Monitor, MonitorLoadError, MonitorOverloaded, Span
from monitors.config import BatchSpec, MonitorSpec
from monitors.registry import parse_options

__all__ = [
    "AsyncMonitor",
    "BatchSpec",
    "Finding",
    "Monitor",
    "MonitorLoadError",
    "MonitorOverloaded",
    "MonitorSpec",
    "Span",
    "parse_options",
]
