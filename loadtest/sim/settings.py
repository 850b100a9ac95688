"""The simulator's one settings object, built at the edge (CLI or a test) and passed in."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from loadtest.sim.faults import FaultRates
from loadtest.sim.output import OUTPUT_MODES
from loadtest.sim.timing import LatencyProfile, get_profile


@dataclass(frozen=True)
class SimSettings:
    """How the simulated vLLM server behaves.

    ``max_num_seqs`` overrides the profile's; ``corpus_path`` is only read in
    ``corpus`` mode (default: the bundled labelled dataset); ``faults`` makes a share
    of the answers fail on purpose (none by default).
    """

    host: str = "127.0.0.1"
    port: int = 8000
    profile: str = "llama-8b-h100"
    output_mode: str = "echo"
    corpus_path: Path | None = None
    max_num_seqs: int | None = None
    seed: int = 0
    model: str = "sim-llama-8b"
    max_model_len: int = 8192
    faults: FaultRates = FaultRates()

    def __post_init__(self) -> None:
        get_profile(self.profile)  # fail early on an unknown name
        if self.output_mode not in OUTPUT_MODES:
            raise ValueError(f"unknown output mode {self.output_mode!r}; "
                             f"known: {', '.join(OUTPUT_MODES)}")
        if self.max_num_seqs is not None and self.max_num_seqs < 1:
            raise ValueError(f"max_num_seqs must be >= 1, got {self.max_num_seqs}")
        if self.max_model_len < 2:
            raise ValueError(f"max_model_len must be >= 2, got {self.max_model_len}")
        if not self.model:
            raise ValueError("the served model name must not be empty")

    def latency_profile(self) -> LatencyProfile:
        profile = get_profile(self.profile)
        if self.max_num_seqs is not None:
            profile = dataclasses.replace(profile, max_num_seqs=self.max_num_seqs)
        return profile
