"""The settings of one bench run, built once from the command line and passed down.

Two profiles fill what the flags leave unset: ``quick`` (the default: about 2-3
minutes on a 2-core laptop, for a first look and CI) and ``full`` (longer rounds and
more repeats: tighter intervals and steadier p99s, for numbers worth publishing).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from loadtest.datasets import DatasetSpec

# Shared by both profiles unless a flag says otherwise.
DEFAULT_SIM_PROFILE = "llama-8b-h100"


@dataclass(frozen=True)
class Profile:
    concurrency: tuple[int, ...]
    duration_s: int
    repeats: int
    warmup_s: float
    max_tokens: int


PROFILES = {
    # 3 levels x 6 scenarios x 2 repeats x 2 s rounds: ~2.5 min with start-up and the
    # safety pass on a 2-core machine (see docs/BENCHMARKS.md for a measured wall time).
    "quick": Profile(concurrency=(1, 16, 64), duration_s=2, repeats=2, warmup_s=2.0,
                     max_tokens=64),
    "full": Profile(concurrency=(1, 16, 64), duration_s=20, repeats=3, warmup_s=5.0,
                    max_tokens=128),
}


@dataclass(frozen=True)
class BenchOptions:
    out: Path
    concurrency: tuple[int, ...]
    duration_s: int
    repeats: int
    warmup_s: float
    max_tokens: int
    profile_name: str = "quick"
    upstream: str | None = None
    sim_profile: str = DEFAULT_SIM_PROFILE
    model: str | None = None
    matrix: Path | None = None
    sets: tuple[str, ...] | None = None
    datasets: tuple[DatasetSpec, ...] = ()  # the first one also gives the load prompts
    load_labels: str = "benign"
    seed: int = 0
    ci_method: str = "t"
    safety: bool = True
    safety_concurrency: int = 32
    safety_max_tokens: int = 256
    safety_stream: bool = False
    safety_sample: int = 0  # items per label; 0 = every item
    cache_dir: Path = field(default_factory=lambda: Path.home() / ".cache" / "taxgate")
    ready_timeout_s: float = 180.0
    plots: bool = True
    command: str = ""

    def __post_init__(self) -> None:
        if not self.concurrency or min(self.concurrency) < 1:
            raise ValueError("--concurrency needs positive levels, e.g. 1,16,64")
        if self.duration_s < 1:
            raise ValueError("--duration must be at least 1 second (Locust's resolution)")
        if self.repeats < 1:
            raise ValueError("--repeats must be at least 1")
        if self.max_tokens < 2:
            raise ValueError("--max-tokens must be at least 2 (ITL needs two tokens)")
        if self.safety_sample < 0 or self.safety_max_tokens < 1 or self.safety_concurrency < 1:
            raise ValueError("--safety-sample must be >= 0, --safety-max-tokens and "
                             "--safety-concurrency >= 1")
        if self.ci_method not in ("t", "bootstrap"):
            raise ValueError("--ci must be 't' or 'bootstrap'")

    @property
    def dataset(self) -> Path | None:
        """The load prompts' file or folder (None: the bundled set)."""
        return self.datasets[0].path if self.datasets else None

    @property
    def work_dir(self) -> Path:
        """Configs, logs and raw samples of the run (kept for inspection)."""
        return self.out / "work"

    @property
    def rounds_total(self) -> int:
        """Measured rounds per scenario (repeats x concurrency levels)."""
        return self.repeats * len(self.concurrency)
