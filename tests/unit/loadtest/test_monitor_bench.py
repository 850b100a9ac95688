"""The monitor micro-batching bench: its statistics, its load loop, and a tiny end-to-end run."""

from __future__ import annotations

import argparse
import json
import time

import pytest
from rich.console import Console

from loadtest import monitor_bench as mb
from monitors.base import Finding
from monitors.config import BatchSpec


def result(max_batch: int, repeat: int, latencies: list[float], wall_s: float,
           batches: int, batched_texts: int, tokens: int = 0, padded_tokens: int = 0,
           cpu_s: float = 0.0) -> mb.RoundResult:
    return mb.RoundResult(max_batch, repeat, tuple(latencies), wall_s, batches, batched_texts,
                          tokens, padded_tokens, cpu_s)


def test_parse_batches_sorts_and_dedupes():
    assert mb.parse_batches("32,1,8,8") == (1, 8, 32)
    assert mb.parse_batches(" 4 ") == (4,)
    for bad in ("", "0,4", "a,2", "-1"):
        with pytest.raises(argparse.ArgumentTypeError):
            mb.parse_batches(bad)


def test_round_plan_alternates_order_between_repeats():
    assert mb.round_plan((1, 32), 3) == [(0, 1), (0, 32), (1, 32), (1, 1), (2, 1), (2, 32)]


def test_summarize_pools_rounds_and_pairs_speedups_by_repeat():
    rounds = [
        # unbatched: 10 texts/s then 20 texts/s
        result(1, 0, [0.1] * 10, 1.0, 10, 10, cpu_s=2.0),
        result(1, 1, [0.2] * 20, 1.0, 20, 20, cpu_s=1.0),
        # batched: 40 then 60 texts/s, in batches of 10
        result(32, 0, [0.05] * 40, 1.0, 4, 40, tokens=300, padded_tokens=400),
        result(32, 1, [0.3] * 60, 1.0, 6, 60, tokens=300, padded_tokens=600),
    ]
    base, batched = mb.summarize(rounds)
    assert (base.max_batch, base.texts, base.rounds) == (1, 30, 2)
    assert base.texts_per_s == pytest.approx(15.0)
    assert base.texts_per_cpu_s == pytest.approx(10.0)  # 30 texts in 3 CPU-seconds
    assert batched.texts_per_cpu_s != batched.texts_per_cpu_s  # NaN: no CPU time recorded
    assert base.mean_batch == 1.0
    assert base.speedup == 1.0
    assert batched.texts_per_s == pytest.approx(50.0)
    assert batched.round_texts_per_s == (40.0, 60.0)
    assert batched.mean_batch == 10.0
    assert batched.padding == pytest.approx(0.4)  # 600 of 1000 computed tokens were real
    assert base.padding is None  # no token counts given
    assert batched.speedup == pytest.approx(50 / 15)
    assert batched.round_speedups == pytest.approx((4.0, 3.0))
    # Percentiles over the pooled latencies: 40 at 50 ms, 60 at 300 ms.
    assert batched.p50_ms == pytest.approx(300.0)
    assert batched.p99_ms == pytest.approx(300.0)
    assert base.p50_ms == pytest.approx(200.0)


def test_a_batch_costs_its_longest_text_times_its_size():
    assert mb.padded([10, 50, 20]) == 150
    assert mb.padded([]) == 0
    assert mb.padding_share(80, 150) == pytest.approx(1 - 80 / 150)
    assert mb.padding_share(0, 0) is None


def test_texts_with_ids_past_the_vocabulary_are_left_out():
    usable, dropped = mb.split_encodable(["ok", "bad", "empty"], [[2, 5, 3], [2, 9, 3], []], vocab_size=9)
    assert usable == {"ok": 3, "empty": 0}
    assert dropped == ["bad"]


def test_summarize_edge_cases():
    assert mb.summarize([]) == []
    assert mb.mean_batch(0, 0) is None
    assert mb.speedup(5.0, 0.0) != mb.speedup(5.0, 0.0)  # NaN: no baseline throughput
    assert result(1, 0, [], 0.0, 0, 0).texts_per_s == 0.0


def test_table_fits_eighty_columns():
    rows = mb.summarize([result(1, 0, [0.5] * 30, 2.0, 30, 30), result(1, 1, [0.5] * 28, 2.0, 28, 28),
                         result(32, 0, [0.9] * 300, 2.0, 10, 300), result(32, 1, [0.9] * 280, 2.0, 9, 280)])
    console = Console(width=80, record=True)
    console.print(mb.rows_table(rows, title="t", caption="c"))
    text = console.export_text()
    assert "…" not in text
    assert "145 (140..150)" in text and "10.0x (10.0..10.0)" in text


def _sleepy_check(texts: list[str]) -> list[Finding]:
    time.sleep(0.005)  # long enough for the other users' texts to queue behind this batch
    return [Finding(score=0.0) for _ in texts]


async def test_run_round_counts_texts_and_reads_batch_sizes_from_the_histogram():
    texts = [f"text {i}" for i in range(5)]
    unbatched = await mb.run_round(_sleepy_check, texts, BatchSpec(max_batch=1), concurrency=8,
                                   duration_s=None, requests=40)
    batched = await mb.run_round(_sleepy_check, texts, BatchSpec(max_batch=8), concurrency=8,
                                 duration_s=None, requests=40, repeat=1,
                                 token_count={text: 10 + i for i, text in enumerate(texts)})
    assert unbatched.texts == 40 and unbatched.batches == 40 and unbatched.batched_texts == 40
    assert batched.texts == 40 and batched.batched_texts == 40 and batched.repeat == 1
    assert batched.batches < 20  # batches of several texts
    assert batched.tokens == 8 * sum(range(10, 15))  # each of the 5 texts sent 8 times
    assert batched.padded_tokens > batched.tokens
    assert unbatched.padded_tokens == unbatched.tokens == 0  # no token counts given
    assert all(latency > 0 for latency in batched.latencies_s)


async def test_run_round_stops_issuing_at_the_deadline():
    done = await mb.run_round(_sleepy_check, ["x"], BatchSpec(max_batch=4), concurrency=4,
                              duration_s=0.05, requests=None)
    assert 0 < done.texts < 200
    assert done.wall_s > 0.03  # the last text issued before the deadline finished after it, or nearly


def test_tiny_model_end_to_end(tmp_path):
    out = tmp_path / "bench.json"
    console = Console(width=100, record=True)
    code = mb.main(["--model-size", "tiny", "--model-dir", str(tmp_path / "model"), "--batches", "1,4",
                    "--concurrency", "4", "--requests", "16", "--repeats", "1", "--warmup", "1",
                    "--json", str(out)], console)
    assert code == 0
    report = json.loads(out.read_text())
    assert [row["max_batch"] for row in report["rows"]] == [1, 4]
    assert report["rows"][0]["mean_batch"] == 1.0
    assert report["rows"][1]["mean_batch"] > 1.0
    assert all(row["texts"] == 16 for row in report["rows"])
    assert report["conditions"]["model"].startswith("32x2 BERT")
    assert "speed-up" in console.export_text()
    # A second run reuses the checkpoint; asking for another size of it is refused.
    with pytest.raises(SystemExit, match="not bert-base"):
        mb.main(["--model-size", "bert-base", "--model-dir", str(tmp_path / "model")], console)
