"""Per-request state: phase timings and the Server-Timing header built from them."""

from __future__ import annotations

from gateway.context import RequestContext


def context(**fields) -> RequestContext:
    return RequestContext(request_id="r1", route="chat", started=10.0, **fields)


def test_defaults():
    ctx = context()
    assert (ctx.model, ctx.status, ctx.flags, ctx.phases) == ("unknown", 200, [], {})
    assert (ctx.prompt_tokens, ctx.completion_tokens) == (0, 0)
    assert ctx.upstream_sent is ctx.upstream_last is ctx.first_sent is None


def test_lists_are_not_shared_between_requests():
    one, two = context(), context()
    one.flags.append("pii")
    one.add_phase("parse", 0.1)
    assert (two.flags, two.phases) == ([], {})


def test_add_phase_sums_repeated_phases_in_first_seen_order():
    ctx = context()
    ctx.add_phase("input_monitors", 0.25)
    ctx.add_phase("parse", 0.5)
    ctx.add_phase("input_monitors", 0.125)
    assert ctx.phases == {"input_monitors": 0.375, "parse": 0.5}
    assert list(ctx.phases) == ["input_monitors", "parse"]


def test_server_timing_with_phases_and_upstream():
    ctx = context(upstream_sent=10.5, upstream_last=11.75)
    ctx.add_phase("parse", 0.0001234)
    ctx.add_phase("output_monitors", 0.02)
    assert ctx.server_timing(now=12.0) == (
        "parse;dur=0.123, output_monitors;dur=20.000, upstream;dur=1250.000, total;dur=2000.000"
    )


def test_server_timing_without_an_upstream_answer():
    # A request refused before (or while) going upstream: no upstream entry.
    assert context().server_timing(now=10.001) == "total;dur=1.000"
    assert context(upstream_sent=10.2).server_timing(now=10.5) == "total;dur=500.000"
    assert context(upstream_last=10.2).server_timing(now=10.5) == "total;dur=500.000"


def test_annotations_and_redactions_are_told_once_each_by_monitor_id():
    from types import SimpleNamespace

    ctx = RequestContext("r1", "chat", 0.0)
    assert ctx.verdict_headers() == {} and ctx.verdict_fields() == {}
    decisions = [
        SimpleNamespace(monitor_id=m, action=a)
        for m, a in (
            ("pii", "redact"),
            ("topics", "annotate"),
            ("pii", "redact"),
            ("jb", "block"),
            ("tox", "pass"),
            ("secrets", "redact"),
            ("shadowed", "shadow"),
        )
    ]
    ctx.note(SimpleNamespace(decisions=decisions))
    assert ctx.verdict_headers() == {"x-taxgate-flags": "topics", "x-taxgate-redacted": "pii,secrets"}
    assert ctx.verdict_fields() == {"taxgate_flags": ["topics"], "taxgate_redacted": ["pii", "secrets"]}
