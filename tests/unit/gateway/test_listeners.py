import orjson
import pytest

from gateway.listeners import ListenerSplit, wrong_listener


@pytest.mark.parametrize(
    "path, on_ops, wrong",
    [
        ("/metrics", True, False),
        ("/ready", True, False),
        ("/health", True, False),
        ("/v1/chat/completions", True, True),
        ("/v1/models", True, True),
        ("/metrics", False, True),
        ("/ready", False, True),
        ("/health", False, False),
        ("/v1/chat/completions", False, False),
        ("/metrics/", False, False),
    ],
)
def test_which_path_answers_on_which_listener(path, on_ops, wrong):
    assert wrong_listener(path, on_ops) is wrong


async def test_a_refusal_is_an_openai_shaped_404_and_counted():
    sent, refused, reached = [], [], []

    async def app(scope, receive, send):
        reached.append(scope["path"])

    async def send(message):
        sent.append(message)

    split = ListenerSplit(app, 9464, on_refused=lambda: refused.append(1))
    scope = {"type": "http", "method": "GET", "server": ("127.0.0.1", 8080)}
    await split({**scope, "path": "/metrics"}, None, send)
    await split({**scope, "path": "/v1/models"}, None, send)
    await split({**scope, "server": ("127.0.0.1", 9464), "path": "/metrics"}, None, send)
    assert reached == ["/v1/models", "/metrics"] and refused == [1]
    assert sent[0]["status"] == 404
    assert orjson.loads(sent[1]["body"])["error"]["code"] == "not_found"
