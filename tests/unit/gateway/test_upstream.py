import httpx
import pytest
from prometheus_client import CollectorRegistry

from gateway.errors import UpstreamError
from gateway.metrics import GatewayMetrics
from gateway.settings import Settings
from gateway.upstream import HttpxTransport, UpstreamPool

A, B = "http://a.test", "http://b.test"


def make_pool(handler, **overrides):
    settings = Settings.model_validate({"upstreams": [A, B], **overrides})
    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    registry = CollectorRegistry()
    return UpstreamPool(settings, HttpxTransport(client), GatewayMetrics(registry)), registry


def models_of(request):
    served = {"a.test": ["m1", "shared"], "b.test": ["m2", "shared"]}[request.url.host]
    return httpx.Response(200, json={"data": [{"id": name} for name in served]})


async def test_least_outstanding_and_model_routing():
    pool, _ = make_pool(models_of)
    await pool.probe_all()
    a, b = pool.replicas
    a.outstanding, b.outstanding = 3, 1
    assert pool.pick("shared", set()) is b
    assert pool.pick("m1", set()) is a  # only a serves m1, however busy
    assert pool.knows_model("m2") is True and pool.knows_model("nope") is False
    assert sorted(m["id"] for m in pool.models()) == ["m1", "m2", "shared"]


async def test_ejection_after_failures_and_recovery():
    down = {"b.test"}

    def handler(request):
        if request.url.host in down:
            raise httpx.ConnectError("refused")
        return models_of(request)

    pool, registry = make_pool(handler, health={"eject_after": 2})
    await pool.probe_all()
    b = pool.replicas[1]
    assert b.healthy  # one failure is not enough
    await pool.probe_all()
    assert not b.healthy
    assert registry.get_sample_value("taxgate_upstream_healthy", {"upstream": B}) == 0
    assert pool.pick("shared", set()) is pool.replicas[0]
    down.clear()
    await pool.probe_all()
    assert b.healthy and pool.ready


async def test_connect_failure_retried_once_then_502():
    def handler(request):
        if request.url.path == "/v1/models":
            return models_of(request)
        raise httpx.ConnectError("refused")

    pool, registry = make_pool(handler, connect_retries=1)
    await pool.probe_all()
    with pytest.raises(UpstreamError, match="2 tried"):
        await pool.open("/v1/chat/completions", b"{}", {}, model="shared", stream=False)
    for url in (A, B):
        assert registry.get_sample_value("taxgate_upstream_errors_total", {"upstream": url, "kind": "connect"}) == 1
    assert all(replica.outstanding == 0 for replica in pool.replicas)
