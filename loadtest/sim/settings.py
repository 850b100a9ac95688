"""The simulator's one settings object, built at the edge (CLI or a test) and passed in."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from loadtest.sim.classify import CLASSIFIER_PROFILES, ClassifierProfile
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
    # The guard classifier served on /classify (vLLM's pooling API) beside the LLM.
    classifier_model: str = "sim-guard"
    classifier_profile: str = "bert-base-gpu"
    classifier_max_len: int = 512

    def __post_init__(self) -> None:
        get_profile(self.profile)  # fail early on an unknown name
        if self.output_mode not in OUTPUT_MODES:
            raise ValueError(f"unknown output mode {self.output_mode!r}; known: {', '.join(OUTPUT_MODES)}")
        if self.max_num_seqs is not None and self.max_num_seqs < 1:
            raise ValueError(f"max_num_seqs must be >= 1, got {self.max_num_seqs}")
        if self.max_model_len < 2:
            raise ValueError(f"max_model_len must be >= 2, got {self.max_model_len}")
        if not self.model:
            raise ValueError("the served model name must not be empty")
        if self.classifier_profile not in CLASSIFIER_PROFILES:
            raise ValueError(
                f"unknown classifier profile {self.classifier_profile!r}; known: {', '.join(CLASSIFIER_PROFILES)}"
            )
        if not self.classifier_model or self.classifier_model == self.model:
            raise ValueError("the classifier's model name must be set and differ from the LLM's")
        if self.classifier_max_len < 8:
            raise ValueError(f"classifier_max_len must be >= 8, got {self.classifier_max_len}")

    def latency_profile(self) -> LatencyProfile:
        profile = get_profile(self.profile)
        if self.max_num_seqs is not None:
            profile = dataclasses.replace(profile, max_num_seqs=self.max_num_seqs)
        return profile

    def classifier(self) -> ClassifierProfile:
        return CLASSIFIER_PROFILES[self.classifier_profile]
