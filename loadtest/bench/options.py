"""The settings of one bench run, built once from the command line and passed down.

Rounds are sized by request count, not seconds: a round of one scenario at one
level ends once ``users x requests_per_user`` requests were answered, so every
scenario gets the same number of samples whatever its speed, and the number of
repeats per level is what the interval over paired repeats needs (Student t with
n - 1 degrees of freedom: 12.7 for 2 repeats, 2.57 for 6). Two profiles fill what
the flags leave unset: ``quick`` (the default, ~5 minutes on a 2-core machine,
sized in docs/BENCHMARKS.md so that the 1- and 16-user taxes resolve to a few ms)
and ``full`` (longer answers, more requests: for numbers worth publishing).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from loadtest.bench.loadlayout import LoadLayout
from loadtest.bench.routes import CHAT, ROUTES
from loadtest.datasets import DatasetSpec

if TYPE_CHECKING:
    from loadtest.bench.targets import Target

# Shared by both profiles unless a flag says otherwise.
DEFAULT_SIM_PROFILE = "llama-8b-h100"
# A request-sized round still ends after this many seconds (a stalled upstream).
ROUND_CEILING_S = 120
# Users started together would run in lockstep (their requests end together and the
# next wave reaches the upstream in one burst); a random start within this spreads them.
STAGGER_S = 0.25


@dataclass(frozen=True)
class LevelRule:
    """For levels up to ``max_users``: requests per user per round, and repeats; then
    up to ``extra`` more repeats of the pairs whose tax intervals are still too wide
    (``loadtest.bench.precision``)."""

    max_users: int
    requests_per_user: int
    repeats: int
    extra: int = 0


@dataclass(frozen=True)
class Profile:
    concurrency: tuple[int, ...]
    rules: tuple[LevelRule, ...]  # by rising max_users; the last one covers the rest
    warmup_s: float
    max_tokens: int

    def rule_for(self, users: int) -> LevelRule:
        return next((r for r in self.rules if users <= r.max_users), self.rules[-1])

    def describe(self) -> str:
        parts = []
        for users in self.concurrency:
            rule = self.rule_for(users)
            extra = f" (+{rule.extra} if wide)" if rule.extra else ""
            parts.append(
                f"{users} user{'s' if users > 1 else ''}: "
                f"{users * rule.requests_per_user} requests x {rule.repeats}{extra}"
            )
        return "; ".join(parts) + f"; max_tokens {self.max_tokens}"


_MANY = 1 << 30
PROFILES = {
    # Measured in docs/BENCHMARKS.md: 7 scenarios in ~5 min on 2 shared cores, >= 30
    # requests per scenario at 1 user, 95% intervals of a few ms at 1 and 16 users.
    "quick": Profile(
        concurrency=(1, 16, 64),
        # Extra repeats at 1 and 16 users only (what the headline must resolve); a
        # set that fills the gateway's core at 16 users varies most (detoxify). At most
        # 3 more there: with 10 scenarios, 6 more took ~40 s of the run and still left
        # detoxify's interval wide (docs/BENCHMARKS.md).
        rules=(LevelRule(1, 5, 6, extra=3), LevelRule(16, 3, 6, extra=3), LevelRule(_MANY, 2, 3)),
        warmup_s=2.0,
        max_tokens=32,
    ),
    "full": Profile(
        concurrency=(1, 16, 64),
        rules=(LevelRule(1, 8, 6, extra=4), LevelRule(16, 5, 6, extra=6), LevelRule(_MANY, 3, 5)),
        warmup_s=5.0,
        max_tokens=128,
    ),
}


@dataclass(frozen=True)
class LevelPlan:
    """How one concurrency level is measured: ``repeats`` rounds per scenario, each of
    ``requests`` requests (0: for ``duration_s`` seconds instead; else a ceiling)."""

    users: int
    repeats: int
    requests: int
    duration_s: int
    stagger_s: float
    extra: int = 0  # more repeats at most, for pairs whose intervals stay too wide


@dataclass(frozen=True)
class BenchOptions:
    out: Path
    concurrency: tuple[int, ...]
    warmup_s: float
    max_tokens: int
    profile_name: str = "quick"
    # None: the profile's per-level rule. duration_s set: rounds last that long instead
    # of being sized by requests.
    repeats: int | None = None
    requests_per_user: int | None = None
    duration_s: int | None = None
    upstream: str | None = None
    route: str = CHAT  # the API route every request of the run goes over (routes.ROUTES)
    sim_profile: str = DEFAULT_SIM_PROFILE
    model: str | None = None
    # The engine serving the classifier sets' guard model (default: the simulator's /classify).
    classifier_url: str | None = None
    classifier_model: str | None = None
    matrix: Path | None = None
    sets: tuple[str, ...] | None = None
    datasets: tuple[DatasetSpec, ...] = ()  # the first one also gives the load prompts
    load_labels: str = "benign"
    seed: int = 0
    ci_method: str = "t"
    # What the extra repeats aim for (see loadtest.bench.precision): a TTFT/E2E p50 tax
    # interval within +-target_ms, or within target_relative of the tax.
    target_ms: float = 5.0
    target_relative: float = 0.10
    safety: bool = True
    safety_concurrency: int = 32
    safety_max_tokens: int = 256
    safety_stream: bool = False
    safety_sample: int = 0  # items per label; 0 = every item
    cache_dir: Path = field(default_factory=lambda: Path.home() / ".cache" / "taxgate")
    ready_timeout_s: float = 180.0
    plots: bool = True
    verbose: bool = False
    command: str = ""
    # Endpoints the bench did not start, measured against direct (--target).
    targets: tuple[Target, ...] = ()
    # Locust workers started here, workers joining from elsewhere, the master's address.
    load_workers: int = 0
    expect_workers: int = 0
    master_bind: str = ""

    def __post_init__(self) -> None:
        if not self.concurrency or min(self.concurrency) < 1:
            raise ValueError("--concurrency needs positive levels, e.g. 1,16,64")
        if self.duration_s is not None and self.duration_s < 1:
            raise ValueError("--duration must be at least 1 second (Locust's resolution)")
        if self.repeats is not None and self.repeats < 1:
            raise ValueError("--repeats must be at least 1")
        if self.requests_per_user is not None and self.requests_per_user < 1:
            raise ValueError("--requests must be at least 1")
        if self.profile_name not in PROFILES:
            raise ValueError(f"unknown profile {self.profile_name!r}")
        if self.max_tokens < 2:
            raise ValueError("--max-tokens must be at least 2 (ITL needs two tokens)")
        if self.safety_sample < 0 or self.safety_max_tokens < 1 or self.safety_concurrency < 1:
            raise ValueError("--safety-sample must be >= 0, --safety-max-tokens and --safety-concurrency >= 1")
        if self.route not in ROUTES:
            raise ValueError(f"--route must be one of {', '.join(ROUTES)}")
        if self.target_ms < 0 or self.target_relative < 0:
            raise ValueError("--target-ms and --target-relative must be >= 0")
        if self.ci_method not in ("t", "bootstrap"):
            raise ValueError("--ci must be 't' or 'bootstrap'")
        self._check_load()

    def _check_load(self) -> None:
        if self.load_workers < 0 or self.expect_workers < 0:
            raise ValueError("--load-workers and --expect-workers must be >= 0")
        if self.master_bind:
            self.load_layout.bind_address()  # raises on a malformed HOST:PORT

    @property
    def load_layout(self) -> LoadLayout:
        return LoadLayout(self.load_workers, self.expect_workers, self.master_bind)

    @property
    def dataset(self) -> Path | None:
        """The load prompts' file or folder (None: the bundled set)."""
        return self.datasets[0].path if self.datasets else None

    @property
    def work_dir(self) -> Path:
        """Configs, logs and raw samples of the run (kept for inspection)."""
        return self.out / "work"

    def level_plan(self, users: int) -> LevelPlan:
        rule = PROFILES[self.profile_name].rule_for(users)
        per_user = self.requests_per_user or rule.requests_per_user
        timed = self.duration_s is not None
        return LevelPlan(
            users=users,
            repeats=self.repeats or rule.repeats,
            requests=0 if timed else users * per_user,
            duration_s=self.duration_s if timed else ROUND_CEILING_S,
            stagger_s=STAGGER_S if users > 1 else 0.0,
            # --repeats asks for an exact count.
            extra=0 if self.repeats else rule.extra,
        )

    @property
    def plans(self) -> tuple[LevelPlan, ...]:
        return tuple(self.level_plan(users) for users in self.concurrency)

    @property
    def rounds_total(self) -> int:
        """Measured rounds per scenario (repeats summed over the concurrency levels)."""
        return sum(plan.repeats for plan in self.plans)
