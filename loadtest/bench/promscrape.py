"""The gateway's own view of where time went, from its Prometheus ``/metrics``.

The bench scrapes each gateway before and after the measured rounds; the
difference of histogram sums and counts gives the mean time per monitor and stage
and per gateway phase during exactly those rounds (warm-up and the safety pass
excluded). Parsing is pure; only ``scrape`` does I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import httpx
from prometheus_client.parser import text_string_to_metric_families

# Histograms whose mean per label set the report shows, and the label naming the part.
HISTOGRAMS = {
    "taxgate_monitor_duration_seconds": ("monitor", "stage"),
    "taxgate_overhead_seconds": ("phase",),
    "taxgate_stream_holdback_seconds": (),
    # Texts per call of a batched monitor (a served classifier: how well calls batch).
    "taxgate_monitor_batch_size": ("monitor",),
}

Key = tuple[str, tuple[str, ...]]


@dataclass(frozen=True, slots=True)
class Timing:
    """Mean of one histogram series over an interval: milliseconds for ``*_seconds``
    histograms, the histogram's own unit (texts per call) otherwise."""

    metric: str
    labels: dict[str, str]
    count: float
    mean_ms: float


def parse(text: str) -> dict[Key, tuple[float, float]]:
    """``(metric, label values) -> (sum, count)`` for the histograms we report."""
    found: dict[Key, list[float]] = {}
    for family in text_string_to_metric_families(text):
        wanted = HISTOGRAMS.get(family.name)
        if wanted is None:
            continue
        for sample in family.samples:
            if sample.name.endswith("_sum"):
                slot = 0
            elif sample.name.endswith("_count"):
                slot = 1
            else:
                continue
            key = (family.name, tuple(sample.labels.get(label, "") for label in wanted))
            found.setdefault(key, [0.0, 0.0])[slot] = sample.value
    return {key: (pair[0], pair[1]) for key, pair in found.items()}


def timings_between(
    before: Mapping[Key, tuple[float, float]], after: Mapping[Key, tuple[float, float]]
) -> list[Timing]:
    """Mean per series over the interval; series that saw nothing in it are left out."""
    timings = []
    for key, (total, count) in sorted(after.items()):
        base_total, base_count = before.get(key, (0.0, 0.0))
        delta_count = count - base_count
        if delta_count <= 0:
            continue
        name, values = key
        labels = dict(zip(HISTOGRAMS[name], values, strict=True))
        scale = 1000.0 if name.endswith("_seconds") else 1.0
        timings.append(Timing(name, labels, delta_count, (total - base_total) / delta_count * scale))
    return timings


def scrape(client: httpx.Client, base_url: str) -> dict[Key, tuple[float, float]]:
    response = client.get(base_url + "/metrics")
    response.raise_for_status()
    return parse(response.text)
