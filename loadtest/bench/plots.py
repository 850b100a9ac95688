"""PNG plots of a report: latency vs concurrency, tax and CPU per monitor set, safety vs tax.

Drawn from the validated ``Report`` alone (so a saved report.json can be re-plotted)
with matplotlib's Agg backend: no display needed.
"""

from __future__ import annotations

from pathlib import Path

from loadtest.bench.schema import Report

PLOT_FILES = ("latency_vs_concurrency.png", "tax_by_scenario.png", "safety_vs_tax.png")
PARETO_PLOT = PLOT_FILES[2]
_METRICS = (("ttft_ms", "TTFT"), ("itl_ms", "ITL"), ("e2e_ms", "E2E"))


def _pyplot():
    # Imported on use: matplotlib is the bench extra's and takes a while to import.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _levels(report: Report) -> list[int]:
    return sorted({s.concurrency for s in report.scenarios})


def _scenario_names(report: Report) -> list[str]:
    return list(dict.fromkeys(s.name for s in report.scenarios))


def _users(level: int | None) -> str:
    return f"{level} user{'' if level == 1 else 's'}"


def _level_label(report: Report, level: int, short: bool = False) -> str:
    """``64 users`` (``64`` if short) plus its saturation flags, so a bounded level is not
    read as gateway tax."""
    summary = next((lv for lv in report.levels if lv.concurrency == level), None)
    flags = [f for f in summary.flags if f != "gateway-bound"] if summary else []
    name = str(level) if short else _users(level)
    return "\n".join([name, *flags])  # one flag per line: side by side they overlap


def plot_latency(report: Report, path: Path) -> Path:
    plt = _pyplot()
    fig, axes = plt.subplots(2, 3, figsize=(15, 8), sharex=True)
    for col, (field, label) in enumerate(_METRICS):
        for row, pct in enumerate(("p50", "p99")):
            ax = axes[row][col]
            few = False
            for name in _scenario_names(report):
                rows = sorted(
                    (s for s in report.scenarios if s.name == name and getattr(s, field)), key=lambda s: s.concurrency
                )
                if not rows:
                    continue
                xs = [s.concurrency for s in rows]
                ys = [getattr(getattr(s, field), pct) for s in rows]
                (line,) = ax.plot(xs, ys, marker="o", label=name)
                # A p99 over fewer than 100 samples: an open marker (it is near the maximum).
                thin = [
                    (x, y)
                    for s, x, y in zip(rows, xs, ys, strict=True)
                    if pct == "p99" and not getattr(s, field).p99_supported
                ]
                if thin:
                    few = True
                    ax.plot(
                        *zip(*thin, strict=True),
                        linestyle="none",
                        marker="o",
                        markerfacecolor="white",
                        color=line.get_color(),
                    )
            ax.set_title(f"{label} {pct}" + (" (open: < 100 samples)" if few else ""))
            ax.set_ylabel("ms")
            ax.set_xscale("log", base=2)
            ax.set_xticks(_levels(report), [_level_label(report, c, short=True) for c in _levels(report)], fontsize=8)
            ax.minorticks_off()
            ax.grid(True, alpha=0.3)
            if row == 1:
                ax.set_xlabel("concurrent users")
    axes[0][0].legend(fontsize=8)
    fig.suptitle("Latency vs concurrency, per scenario")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_tax(report: Report, path: Path) -> Path:
    """Grouped bars per concurrency: tax vs direct per scenario (95% CI whiskers), and the
    gateway's CPU per 1,000 output tokens: the price in latency and in cores."""
    plt = _pyplot()
    rows = [t for t in report.tax if t.baseline == "direct"]
    names = list(dict.fromkeys(t.scenario for t in rows))
    levels = sorted({t.concurrency for t in rows})
    fig, axes = plt.subplots(1, 4, figsize=(19, 5.2))
    width = 0.8 / max(len(names), 1)
    # ITL at p99: hold-back releases text in bursts, so its p50 gap is ~0 and says little.
    panels = (("ttft_ms", "TTFT", "p50"), ("itl_ms", "ITL", "p99"), ("e2e_ms", "E2E", "p50"))
    for ax, (field, label, pct) in zip(axes, panels, strict=False):
        for i, name in enumerate(names):
            xs, ys, errs = [], [], [[], []]
            for j, level in enumerate(levels):
                row = next((t for t in rows if t.scenario == name and t.concurrency == level), None)
                deltas = getattr(row, field) if row else None
                if deltas is None:
                    continue
                d = getattr(deltas, pct)
                xs.append(j + (i - (len(names) - 1) / 2) * width)
                ys.append(d.value)
                errs[0].append(d.value - d.ci_low if d.ci_low is not None else 0.0)
                errs[1].append(d.ci_high - d.value if d.ci_high is not None else 0.0)
            if xs:
                ax.bar(xs, ys, width, yerr=errs, capsize=2, label=name)
        ax.axhline(0, color="black", linewidth=0.8)
        few = pct == "p99" and any(getattr(t, field) is not None and not getattr(t, field).p99_supported for t in rows)
        ax.set_xticks(range(len(levels)), [_level_label(report, c) for c in levels], fontsize=8)
        ax.set_title(f"{label} {pct}: scenario - direct" + (" († some < 100 samples)" if few else ""))
        ax.set_ylabel("ms (95% CI)")
        ax.grid(True, axis="y", alpha=0.3)
    _plot_cpu(report, axes[3], names, levels, width)
    axes[0].legend(fontsize=8)
    fig.suptitle("Safety tax per scenario (vs the upstream alone) and the gateway's CPU cost")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _plot_cpu(report: Report, ax, names: list[str], levels: list[int], width: float) -> None:
    for i, name in enumerate(names):
        xs, ys = [], []
        for j, level in enumerate(levels):
            row = next((s for s in report.scenarios if s.name == name and s.concurrency == level), None)
            if row is None or row.gateway_cpu_s_per_1k_tokens is None:
                continue
            xs.append(j + (i - (len(names) - 1) / 2) * width)
            ys.append(row.gateway_cpu_s_per_1k_tokens)
        if xs:
            ax.bar(xs, ys, width, label=name)
    if report.targets:  # an empty panel would read as "costs nothing"
        ax.text(
            0.5,
            0.5,
            "not known for --target endpoints\n(not started by the bench)",
            transform=ax.transAxes,
            ha="center",
            va="center",
            fontsize=8,
            color="#666",
        )
    ax.set_xticks(range(len(levels)), [_level_label(report, c) for c in levels], fontsize=8)
    ax.set_title("gateway CPU per 1,000 output tokens")
    ax.set_ylabel("CPU seconds")
    ax.grid(True, axis="y", alpha=0.3)


def plot_safety_vs_tax(report: Report, path: Path) -> Path:
    """One point per monitor set: harmful items caught vs TTFT p50 tax (95% interval) at the
    headline level, the highest one the machine did not bound."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 5.5))
    level = report.headline_concurrency
    cpu = {s.name: s.gateway_cpu_s_per_1k_tokens for s in report.scenarios if s.concurrency == level}
    for safety in report.safety:
        row = next(
            (
                t
                for t in report.tax
                if t.scenario == safety.scenario and t.baseline == "direct" and t.concurrency == level
            ),
            None,
        )
        if row is None or row.ttft_ms is None or safety.harmful_catch_rate is None:
            continue
        d = row.ttft_ms.p50
        x, y = d.value, safety.harmful_catch_rate * 100
        xerr = None if d.ci_low is None else [[x - d.ci_low], [d.ci_high - x]]
        ax.errorbar([x], [y], xerr=xerr, fmt="o", markersize=8, capsize=3)
        false_rate = safety.false_positive_rate
        caveat = " (random weights)" if any("random weights" in n for n in safety.notes) else ""
        cost = cpu.get(safety.scenario)
        cost_text = "" if cost is None else f", {cost:.2f} CPU-s/1k tok"
        false_text = "n/a" if false_rate is None else f"{false_rate * 100:.1f}%"
        ax.annotate(
            f"{safety.scenario}{caveat}\nfalse positive (any action) {false_text}{cost_text}",
            (x, y),
            textcoords="offset points",
            xytext=(6, -16 if y > 90 else 4),
            fontsize=8,
        )
    summary = next((lv for lv in report.levels if lv.concurrency == level), None)
    bounded = "\nevery level saturated: the lowest is shown" if summary and summary.saturated else ""
    ax.set_xlabel(f"TTFT p50 tax vs direct, {_users(level)} (ms, 95% interval)")
    ax.set_ylabel("harmful items caught (%)")
    ax.set_ylim(-5, 108)
    left, right = ax.get_xlim()
    ax.set_xlim(min(left, 0.0), max(right, 1.0))
    ax.axvline(0, color="black", linewidth=0.8)
    ax.grid(True, alpha=0.3)
    ax.set_title(f"Safety gained vs tax paid (one point per monitor set){bounded}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_plots(report: Report, out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [plot_latency(report, out_dir / PLOT_FILES[0]), plot_tax(report, out_dir / PLOT_FILES[1])]
    if report.safety:
        paths.append(plot_safety_vs_tax(report, out_dir / PLOT_FILES[2]))
    return paths
