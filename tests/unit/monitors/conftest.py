from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from monitors.metrics import MonitorMetrics


@pytest.fixture
def prom() -> CollectorRegistry:
    """A fresh Prometheus registry per test, so counts start at zero."""
    return CollectorRegistry()


@pytest.fixture
def metrics(prom: CollectorRegistry) -> MonitorMetrics:
    return MonitorMetrics(prom)
