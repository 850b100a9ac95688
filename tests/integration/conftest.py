"""Fixture factory for real gateways (in-process uvicorn on loopback, fresh metric registry)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from gateway.app import create_app
from gateway.settings import Settings
from monitors.registry import MonitorRegistry
from tests.servers import ThreadedServer


@dataclass
class RunningGateway:
    base_url: str
    registry: CollectorRegistry
    settings: Settings
    server: ThreadedServer

    @property
    def v1(self) -> str:
        return self.base_url + "/v1"

    def sample(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0

    def wait_sample(self, name: str, expected: float, timeout_s: float = 5, **labels: str) -> float:
        """The sample once it reaches ``expected``: a stream is recorded just after its
        last byte left, so a client that stopped at ``[DONE]`` can be a moment ahead."""
        deadline = time.monotonic() + timeout_s
        while (value := self.sample(name, **labels)) != expected and time.monotonic() < deadline:
            time.sleep(0.05)
        return value

    def stop(self) -> None:
        self.server.stop()


GatewayFactory = Callable[..., RunningGateway]


@pytest.fixture
def start_gateway(tmp_path) -> Iterator[GatewayFactory]:
    """``start_gateway(upstreams=[url], monitors=[...], monitor_registry=..., **settings)``."""
    running: list[RunningGateway] = []

    def start(
        *,
        upstreams: list[str],
        monitor_registry: MonitorRegistry | None = None,
        ready_path: str = "/health",
        **overrides: Any,
    ) -> RunningGateway:
        data: dict[str, Any] = {"upstreams": upstreams, "audit": {"path": str(tmp_path / f"audit{len(running)}.db")}}
        data.update(overrides)
        settings = Settings.model_validate(data)
        registry = CollectorRegistry()
        app = create_app(settings, registry=registry, monitor_registry=monitor_registry)
        server = ThreadedServer(app).start(ready_path=ready_path)
        gateway = RunningGateway(server.base_url, registry, settings, server)
        running.append(gateway)
        return gateway

    yield start
    for gateway in running:
        gateway.stop()
