"""Builds the taxgate Grafana dashboard: the one source of ``dashboards/taxgate.json``.

    python deploy/grafana/build_dashboard.py          # rewrite the committed JSON
    python deploy/grafana/build_dashboard.py --check  # exit 1 when the JSON is stale

Plain dicts, no Grafana SDK: the dashboard needs a handful of panel kinds, and a
generator a reader can follow beats 2,000 lines of hand-edited JSON. Every query
uses only metric names the gateway (``gateway/metrics.py``, ``monitors/metrics.py``)
and vLLM really export; ``tests/integration/test_observability.py`` runs each one
against a real Prometheus and fails on any that returns nothing.

The safety-tax panels read the recording rules in ``deploy/prometheus/rules/``, so
the dashboard and the alerts agree on one definition of the tax.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

OUTPUT = Path(__file__).resolve().parent / "dashboards" / "taxgate.json"
UID = "taxgate-overview"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
RATE = "$__rate_interval"
# Gateway series carry ``model``, vLLM's carry ``model_name``: one variable filters both.
GW = 'model=~"$model"'
VLLM = 'model_name=~"$model"'
QUANTILES = ("0.5", "0.99")


# -- PromQL helpers ----------------------------------------------------------------------
def _series(metric: str, selector: str = "") -> str:
    return f"{metric}{{{selector}}}" if selector else metric


def rate(metric: str, selector: str = "", by: str = "") -> str:
    inner = f"rate({_series(metric, selector)}[{RATE}])"
    return f"sum by ({by}) ({inner})" if by else f"sum({inner})"


def quantile(q: str, histogram: str, selector: str = "", by: str = "") -> str:
    groups = f"le, {by}" if by else "le"
    return f"histogram_quantile({q}, {rate(histogram + '_bucket', selector, groups)})"


def mean(histogram: str, selector: str = "", by: str = "") -> str:
    return f"{rate(histogram + '_sum', selector, by)} / {rate(histogram + '_count', selector, by)}"


# -- panels --------------------------------------------------------------------------------
def target(expr: str, legend: str) -> dict:
    return {"expr": expr, "legendFormat": legend, "datasource": DATASOURCE, "range": True}


def quantile_targets(histogram: str, selector: str, who: str, by: str = "") -> list[dict]:
    """p50 and p99 of a histogram; ``who`` starts the legend."""
    return [target(quantile(q, histogram, selector, by), f"{who} p{_pct(q)}") for q in QUANTILES]


def _pct(q: str) -> str:
    return f"{float(q) * 100:g}"


def timeseries(
    title: str, description: str, unit: str, targets: list[dict], *, width: int = 12, stack: bool = False
) -> dict:
    custom: dict = {"lineWidth": 1, "fillOpacity": 20 if stack else 0, "showPoints": "never", "spanNulls": True}
    if stack:
        custom["stacking"] = {"mode": "normal", "group": "A"}
    return {
        "type": "timeseries",
        "title": title,
        "description": description,
        # _width/_height are layout hints; layout() turns them into gridPos.
        "datasource": DATASOURCE,
        "_width": width,
        "_height": 8,
        "fieldConfig": {"defaults": {"unit": unit, "custom": custom}, "overrides": []},
        "options": {
            "legend": {"displayMode": "table", "placement": "bottom", "calcs": ["mean", "lastNotNull", "max"]},
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
        "targets": targets,
    }


def stat(title: str, description: str, unit: str, expr: str, *, width: int = 4) -> dict:
    return {
        "type": "stat",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "_width": width,
        "_height": 4,
        "fieldConfig": {"defaults": {"unit": unit, "decimals": 3}, "overrides": []},
        "options": {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "value",
            "graphMode": "area",
            "textMode": "auto",
        },
        "targets": [target(expr, title)],
    }


# -- rows -------------------------------------------------------------------------------
INPUT_BLOCK = 'stage="input",action="block"'
NOT_PASS = 'action!="pass"'


def overview() -> list[dict]:
    requests = rate("taxgate_requests_total", GW)
    return [
        stat("Requests/s", "Requests answered by the gateway(s), all statuses.", "reqps", requests),
        # The numerator defaults to 0 so a quiet error-free minute shows 0, not "No data";
        # the denominator still needs the metric, so a rename is still caught.
        stat(
            "5xx ratio",
            "Share of requests answered 5xx (upstream or gateway failure).",
            "percentunit",
            f'(sum(rate(taxgate_requests_total{{{GW},status=~"5.."}}[{RATE}])) or vector(0)) / {requests}',
        ),
        stat(
            "Blocked input ratio",
            "Input block verdicts per request (HTTP 400 "
            "content_blocked); two monitors blocking one request count twice.",
            "percentunit",
            rate("taxgate_monitor_verdicts_total", INPUT_BLOCK) + " / " + requests,
        ),
        stat(
            "In flight", "Requests being served now, all gateway replicas.", "short", "sum(taxgate_in_flight_requests)"
        ),
        stat(
            "Gateways reporting",
            "Gateway processes whose metrics Prometheus scrapes.",
            "short",
            "count(taxgate_in_flight_requests)",
        ),
        stat(
            "TTFT tax p99",
            "Gateway p99 TTFT minus the upstream's p99 TTFT as seen by the gateway (recording rule, 1m window).",
            "s",
            'max(route_model:taxgate_ttft_tax_seconds:quantile1m{quantile="0.99",' + GW + "})",
        ),
        timeseries(
            "Requests by status",
            "Requests answered per second, by route and HTTP status. 400 includes content_blocked.",
            "reqps",
            [target(rate("taxgate_requests_total", GW, "route, status"), "{{route}} {{status}}")],
            stack=True,
        ),
        timeseries(
            "Tokens",
            "Prompt and completion tokens per second through the gateway, next to vLLM's own counters.",
            "short",
            [
                target(rate("taxgate_prompt_tokens_total", GW, "model"), "gateway prompt {{model}}"),
                target(rate("taxgate_completion_tokens_total", GW, "model"), "gateway completion {{model}}"),
                target(rate("vllm:prompt_tokens_total", VLLM, "model_name"), "vLLM prompt {{model_name}}"),
                target(rate("vllm:generation_tokens_total", VLLM, "model_name"), "vLLM generation {{model_name}}"),
            ],
        ),
    ]


def latency() -> list[dict]:
    gap = "The gap between the gateway's lines and the upstream's is the safety tax."
    return [
        timeseries(
            "TTFT: gateway vs upstream vs vLLM",
            "Time to first token at the gateway (request received -> first text "
            "sent), the upstream as timed by the gateway, and vLLM's own. " + gap,
            "s",
            quantile_targets("taxgate_ttft_seconds", GW, "gateway")
            + quantile_targets("taxgate_upstream_ttft_seconds", GW, "upstream")
            + quantile_targets("vllm:time_to_first_token_seconds", VLLM, "vLLM"),
        ),
        timeseries(
            "ITL: gateway vs vLLM",
            "Gap between writes carrying text sent to the client, "
            "and vLLM's inter-token latency. Hold-back windows raise the gateway's "
            "tail.",
            "s",
            quantile_targets("taxgate_itl_seconds", GW, "gateway")
            + quantile_targets("vllm:inter_token_latency_seconds", VLLM, "vLLM"),
        ),
        timeseries(
            "E2E: gateway vs upstream vs vLLM",
            "Request received -> last byte sent, "
            "upstream request -> last chunk, and vLLM's e2e request latency. " + gap,
            "s",
            quantile_targets("taxgate_e2e_seconds", GW, "gateway")
            + quantile_targets("taxgate_upstream_e2e_seconds", GW, "upstream")
            + quantile_targets("vllm:e2e_request_latency_seconds", VLLM, "vLLM"),
        ),
        timeseries(
            "Safety tax per percentile",
            "Gateway percentile minus upstream percentile (the bench's definition), from the recording rules.",
            "s",
            [
                target(
                    f"route_model:taxgate_ttft_tax_seconds:quantile1m{{{GW}}}", "TTFT {{route}} {{model}} q{{quantile}}"
                ),
                target(
                    f"route_model:taxgate_e2e_tax_seconds:quantile1m{{{GW}}}", "E2E {{route}} {{model}} q{{quantile}}"
                ),
            ],
        ),
        # What the tax budget buys is read beside what it costs: coverage lost.
        timeseries(
            "Monitor coverage under the budget",
            "Share of each monitor's checks whose "
            "verdict came within the stage budget (budgets); the rest were skipped "
            "(degrade: skip). 1 = every request checked in time.",
            "percentunit",
            [target("monitor_stage:taxgate_monitor_coverage:ratio_rate5m", "{{monitor}}/{{stage}}")],
        ),
        timeseries(
            "Checks skipped under the budget",
            "degrade: skip checks given up per "
            "second: predicted (not queued: the predicted wait did not fit) and late "
            "(released at the budget; the verdict is audited as shadow).",
            "ops",
            [
                target(
                    rate("taxgate_monitor_skipped_total", "", "monitor, stage, reason"),
                    "{{monitor}}/{{stage}} {{reason}}",
                ),
                target(
                    rate("taxgate_monitor_checks_in_time_total", "", "monitor, stage"), "{{monitor}}/{{stage}} in time"
                ),
            ],
        ),
    ]


def phases() -> list[dict]:
    return [
        timeseries(
            "Time added by phase (p99)",
            "Per request, what each gateway phase added: parse, input_monitors, output_monitors, holdback.",
            "s",
            [target(quantile("0.99", "taxgate_overhead_seconds", by="phase"), "{{phase}} p99")],
        ),
        timeseries(
            "Time added by phase (mean)",
            "Mean seconds per request that spent time in the phase.",
            "s",
            [target(mean("taxgate_overhead_seconds", by="phase"), "{{phase}}")],
            stack=True,
        ),
    ]


def monitors() -> list[dict]:
    by = "monitor, stage"
    return [
        timeseries(
            "Monitor latency",
            "Time each monitor's check took, queue wait included (shadow and late checks too).",
            "s",
            quantile_targets("taxgate_monitor_duration_seconds", "", "{{monitor}}/{{stage}}", by),
            width=8,
        ),
        timeseries(
            "Monitor queue wait (p99)",
            "Time a text waited in a monitor's micro-batch queue before its batch ran.",
            "s",
            [target(quantile("0.99", "taxgate_monitor_queue_wait_seconds", by="monitor"), "{{monitor}} p99")],
            width=8,
        ),
        timeseries(
            "Monitor batch size",
            "Texts scored per monitor call: mean and p99. Larger batches under load are the micro-batcher working.",
            "short",
            [
                target(mean("taxgate_monitor_batch_size", by="monitor"), "{{monitor}} mean"),
                target(quantile("0.99", "taxgate_monitor_batch_size", by="monitor"), "{{monitor}} p99"),
            ],
            width=8,
        ),
        timeseries(
            "Blocks, redactions, annotations",
            "Verdicts other than pass, per "
            "monitor, stage and action. 'shadow' is what a shadow monitor would have "
            "caught.",
            "ops",
            [
                target(
                    rate("taxgate_monitor_verdicts_total", NOT_PASS, "monitor, stage, action"),
                    "{{monitor}}/{{stage}} {{action}}",
                )
            ],
            width=12,
        ),
        timeseries(
            "Hit ratio by monitor",
            "Share of a monitor's checks that were not a pass. A jump means new traffic or a broken monitor.",
            "percentunit",
            [
                target(
                    rate("taxgate_monitor_verdicts_total", NOT_PASS, by)
                    + " / "
                    + rate("taxgate_monitor_verdicts_total", "", by),
                    "{{monitor}}/{{stage}}",
                )
            ],
            width=12,
        ),
        timeseries(
            "Monitor errors and timeouts",
            "Monitor failures by kind: error, timeout, overload (queue full, or shed under a stage budget).",
            "ops",
            [
                target(
                    rate("taxgate_monitor_errors_total", "", "monitor, stage, kind"), "{{monitor}}/{{stage}} {{kind}}"
                )
            ],
            width=12,
        ),
        timeseries(
            "Fail-open passes",
            "Checks let through unchecked because a monitor "
            "failed with on_error: open (a stream is checked many times per request). "
            "Non-zero means unscreened traffic.",
            "ops",
            [target(rate("taxgate_monitor_fail_open_total", "", by), "{{monitor}}/{{stage}}")],
            width=12,
        ),
    ]


def guard_engines() -> list[dict]:
    calls = "taxgate_monitor_call_seconds"
    return [
        timeseries(
            "Guard engine call latency",
            "One call from the gateway to a served guard "
            "model (classifier on vLLM /classify, FMS detector): many checks' texts per "
            "call. Rising with flat texts per call means the engine, not batching, slows.",
            "s",
            quantile_targets(calls, "", "{{monitor}}", "monitor"),
            width=12,
        ),
        timeseries(
            "Texts per guard engine call",
            "Mean texts per call (batching across requests: grows with concurrent streams) and calls per second.",
            "short",
            [
                target(
                    f"{rate('taxgate_monitor_batch_size_sum', by='monitor')} / {rate(calls + '_count', by='monitor')}",
                    "{{monitor}} texts/call",
                ),
                target(rate(calls + "_count", by="monitor"), "{{monitor}} calls/s"),
            ],
            width=12,
        ),
    ]


def streaming() -> list[dict]:
    return [
        timeseries(
            "Hold-back delay",
            "Delay hold-back added to released text (text arrived -> released).",
            "s",
            quantile_targets("taxgate_stream_holdback_seconds", "", "delay"),
            width=6,
        ),
        timeseries(
            "Characters per release",
            "Characters a hold-back release let out: small at low load, larger as checks wait for the monitors.",
            "short",
            quantile_targets("taxgate_stream_held_chars", "", "chars"),
            width=6,
        ),
        timeseries(
            "Checks per stream",
            "Output-monitor checks per monitored stream.",
            "short",
            quantile_targets("taxgate_stream_checks", "", "checks"),
            width=6,
        ),
        timeseries(
            "Streams cut and tokens leaked",
            "Streams cut by an output monitor, by "
            "mode; chunks sent before a stream_first block (the cost of not holding "
            "back); fields that reached streaming.max_hold_chars.",
            "ops",
            [
                target(rate("taxgate_stream_blocks_total", by="mode"), "cut {{mode}}"),
                target(rate("taxgate_stream_leaked_tokens_total"), "leaked chunks"),
                target(rate("taxgate_stream_hold_cap_total", by="outcome"), "hold cap {{outcome}}"),
            ],
            width=6,
        ),
    ]


def upstreams() -> list[dict]:
    return [
        timeseries(
            "Upstream health",
            "1 when an upstream passes the gateway's health checks, 0 when ejected.",
            "short",
            [target("max by (upstream) (taxgate_upstream_healthy)", "{{upstream}}")],
            width=8,
        ),
        timeseries(
            "Upstream errors and client disconnects",
            "Upstream failures by kind "
            "(connect, timeout, status, protocol, midstream), and streams the client "
            "left early (the upstream request is cancelled).",
            "ops",
            [
                target(rate("taxgate_upstream_errors_total", by="upstream, kind"), "{{upstream}} {{kind}}"),
                target(rate("taxgate_client_disconnects_total", by="route"), "client left {{route}}"),
            ],
            width=8,
        ),
        timeseries(
            "vLLM queue and KV cache",
            "vLLM requests running and waiting, and KV "
            "cache usage (0-1). Waiting > 0 means vLLM, not the gateway, is the "
            "bottleneck.",
            "short",
            [
                target(f"sum by (model_name) (vllm:num_requests_running{{{VLLM}}})", "running {{model_name}}"),
                target(f"sum by (model_name) (vllm:num_requests_waiting{{{VLLM}}})", "waiting {{model_name}}"),
                target(f"avg by (model_name) (vllm:kv_cache_usage_perc{{{VLLM}}})", "KV cache {{model_name}}"),
            ],
            width=8,
        ),
        timeseries(
            "Audit log",
            "Monitor verdicts written to the audit store, and events "
            "dropped on a store error (each replica has its own store).",
            "ops",
            [
                target(rate("taxgate_audit_events_total"), "written"),
                target(rate("taxgate_audit_dropped_total"), "dropped"),
            ],
            width=24,
        ),
    ]


ROWS = (
    ("Overview", overview),
    ("Latency: gateway vs upstream vs vLLM (the gap is the tax)", latency),
    ("Where the gateway's time goes", phases),
    ("Monitors", monitors),
    ("Guard models on serving engines", guard_engines),
    ("Streaming output", streaming),
    ("Upstreams, vLLM and audit", upstreams),
)


# -- layout and dashboard --------------------------------------------------------------
def layout(rows) -> list[dict]:
    """Rows of panels, left to right, wrapping at Grafana's 24 columns."""
    panels: list[dict] = []
    y = 0
    for title, build_row in rows:
        panels.append(
            {
                "type": "row",
                "title": title,
                "collapsed": False,
                "panels": [],
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": y},
            }
        )
        y += 1
        x, row_height = 0, 0
        for panel in build_row():
            width, height = panel.pop("_width"), panel.pop("_height")
            if x + width > 24:
                x, y, row_height = 0, y + row_height, 0
            panel["gridPos"] = {"h": height, "w": width, "x": x, "y": y}
            x, row_height = x + width, max(row_height, height)
            panels.append(panel)
        y += row_height
    for number, panel in enumerate(panels, start=1):
        panel["id"] = number
        for ref, query in enumerate(panel.get("targets", [])):
            query["refId"] = chr(ord("A") + ref)
    return panels


def templating() -> dict:
    return {
        "list": [
            {
                "name": "datasource",
                "label": "Prometheus",
                "type": "datasource",
                "query": "prometheus",
                "current": {},
                "hide": 0,
                "refresh": 1,
            },
            {
                "name": "model",
                "label": "Model",
                "type": "query",
                "datasource": DATASOURCE,
                "query": {"query": "label_values(taxgate_requests_total, model)", "refId": "model"},
                "definition": "label_values(taxgate_requests_total, model)",
                "multi": True,
                "includeAll": True,
                "allValue": ".*",
                "current": {},
                "refresh": 2,
                "sort": 1,
                "hide": 0,
            },
        ]
    }


def build() -> dict:
    return {
        "uid": UID,
        "title": "taxgate: safety tax",
        "tags": ["taxgate", "vllm", "llm"],
        "description": "What the model cost and what safety cost: gateway vs upstream "
        "latency, monitor cost and verdicts, streaming hold-back, upstreams.",
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-30m", "to": "now"},
        "refresh": "10s",
        "timezone": "",
        "annotations": {"list": []},
        "links": [],
        "templating": templating(),
        "panels": layout(ROWS),
    }


def render() -> str:
    return json.dumps(build(), indent=2, sort_keys=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="do not write; exit 1 when the committed JSON differs")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if not OUTPUT.exists() or OUTPUT.read_text(encoding="utf-8") != text:
            print(f"{OUTPUT} is stale: run python {Path(__file__).name}", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
