"""Safety monitors: a library that scores texts. It knows nothing of HTTP or the gateway."""

from monitors.base import Finding, Monitor, Span
from monitors.config import BatchSpec, MonitorSpec

__all__ = ["Finding", "Monitor", "Span", "MonitorSpec", "BatchSpec", "StreamingSpec"]
