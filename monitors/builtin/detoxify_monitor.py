"""Detoxify: BERT-family toxicity classifiers (the ``detoxify`` package, extra ``taxgate[detoxify]``).

Options::

    model_type: original        # original | unbiased | multilingual | original-small | unbiased-small
    checkpoint: /models/detoxify.ckpt      # a local checkpoint instead of the download
    config_path: /models/hf-config         # its Hugging Face config + tokenizer folder
    device: cpu                            # or cuda
    threads: 1                             # torch intra-op threads (CPU); see below
    check_chars: 24                        # streams: judge new words in groups this long
    download_probe_timeout_s: 5            # see below

Without ``checkpoint`` Detoxify downloads its released weights from GitHub on first
use. Its downloader has no timeout, so on a network that drops packets it would hang
the gateway's start; we first check the torch hub cache, then probe the host with a
short timeout, and fail with a message that says how to load a local checkpoint.
``loadtest.tiny_detoxify`` builds such a checkpoint (random weights) for tests and
benchmarks.

CPU cost: the model runs in the gateway process, on the cores that relay every token,
one check per stream window. torch's default is a pool of intra-op threads as wide as
the machine, which spin between the small calls a stream makes; measured at one stream
they were two thirds of the gateway's CPU per token. A gateway process uses one core,
so ``threads: 1`` (torch.set_num_threads, process-wide) is the default; raise it only
where the gateway has cores to spare for bigger batches. Checks run under
``torch.inference_mode`` with the fast (Rust) tokenizer of the same vocabulary, and the
scores leave the tensor in one ``tolist()``. A check's cost is mostly fixed (measured on
the tiny model: a 9-character check costs 86 % of a 172-character one), so a stream's
new words are judged in groups of at least ``check_chars`` characters (the hold: a
stream releases text when no check is due; at the answer's end everything is judged):
one check per few tokens at low load instead of one per token, where the wait is free
under ``stream_first`` and a few tokens of hold under ``holdback`` (``check_chars: 0``,
or ``stream_hold: word``, judges every word). Better still, serve the model on an engine:
the ``classifier`` monitor (README: guard models on a serving engine).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field

from monitors.base import Finding, Monitor, MonitorLoadError
from monitors.config import MonitorSpec
from monitors.holds import word_group_hold
from monitors.registry import parse_options

ModelType = Literal["original", "unbiased", "multilingual", "original-small", "unbiased-small"]


class DetoxifyOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model_type: ModelType = "original"
    checkpoint: Path | None = None
    config_path: Path | None = None
    device: Literal["cpu", "cuda"] = "cpu"
    threads: int = Field(1, ge=1)
    check_chars: int = Field(24, ge=0)
    download_probe_timeout_s: float = Field(5.0, gt=0)


class DetoxifyMonitor(Monitor):
    """Scores whole texts; the score is the highest label probability."""

    def __init__(self, model: Any, check_chars: int = 0) -> None:
        self._model = model
        self._scorer = _Scorer.wrap(model)
        self._check_chars = check_chars

    def hold(self, text: str, start: int = 0) -> int:
        """The partial word, and new complete words until there are ``check_chars`` of them."""
        return word_group_hold(text, start, self._check_chars)

    @property
    def min_new_chars(self) -> int:
        return self._check_chars

    def check(self, texts: Sequence[str]) -> list[Finding]:
        if not texts:
            return []
        if self._scorer is not None:
            names, rows = self._scorer.scores(list(texts))
            return [Finding(score=max(row), labels=dict(zip(names, row, strict=True))) for row in rows]
        raw = self._model.predict(list(texts))
        # Detoxify squeezes a batch of one to bare floats; make every label a list again.
        columns = {label: values if isinstance(values, list) else [values] for label, values in raw.items()}
        findings = []
        for i in range(len(texts)):
            labels = {label: float(values[i]) for label, values in columns.items()}
            findings.append(Finding(score=max(labels.values(), default=0.0), labels=labels))
        return findings

    def close(self) -> None:
        self._model = None
        self._scorer = None


class _Scorer:
    """Detoxify's ``predict`` made cheap per call: its model and class names, the fast
    tokenizer of the same vocabulary, inference mode, one ``tolist()``. Scores are the
    same (a sigmoid per label, texts cut at the model's 512 tokens, as Detoxify does)."""

    def __init__(self, model: Any, tokenizer: Any, names: list[str]) -> None:
        import torch

        self._torch = torch
        self._model = model
        self._tokenizer = tokenizer
        self._names = names
        self._device = next(model.parameters()).device

    @classmethod
    def wrap(cls, detoxify: Any) -> _Scorer | None:
        """None for an object that is not a Detoxify instance as we know it (tests' fakes)."""
        model, tokenizer = getattr(detoxify, "model", None), getattr(detoxify, "tokenizer", None)
        names = getattr(detoxify, "class_names", None)
        if model is None or tokenizer is None or not names or not hasattr(model, "parameters"):
            return None
        model.eval()
        return cls(model, _fast(tokenizer), list(names))

    def scores(self, texts: list[str]) -> tuple[list[str], list[list[float]]]:
        with self._torch.inference_mode():
            inputs = self._tokenizer(texts, return_tensors="pt", truncation=True, padding=True)
            if self._device.type != "cpu":
                inputs = inputs.to(self._device)
            logits = self._model(**inputs)[0]
            return self._names, self._torch.sigmoid(logits).cpu().tolist()


def _fast(tokenizer: Any) -> Any:
    """The Rust tokenizer of the same files when there is one (BertTokenizer's Python
    WordPiece costs more per check than the tiny model's forward pass)."""
    if getattr(tokenizer, "is_fast", True):
        return tokenizer
    import transformers

    fast_class = getattr(transformers, type(tokenizer).__name__ + "Fast", None)
    source = getattr(tokenizer, "name_or_path", None)
    if fast_class is None or not source:
        return tokenizer
    try:
        return fast_class.from_pretrained(source, local_files_only=True)
    except Exception:  # no local files for it (a hub name, offline): keep the slow one, same scores
        return tokenizer


def _local_help(model_type: str) -> str:
    return (
        "To run offline, pass a local checkpoint in the monitor config: "
        "`checkpoint: /path/to/model.ckpt` (a torch.save'd dict with `config` and `state_dict`, "
        "like Detoxify's released .ckpt files) and `config_path: /path/to/hf-config` (the "
        f"Hugging Face config.json and tokenizer files for the {model_type!r} architecture). "
        "`python -m loadtest.tiny_detoxify OUT` builds a random-weight one for tests."
    )


def _cached_checkpoint(url: str) -> Path:
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlsplit(url).path)


def _probe(url: str, timeout_s: float) -> str | None:
    """None if the download host answers a TCP connect within ``timeout_s``, else why not."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname or "", port), timeout=timeout_s):
            return None
    except OSError as exc:
        return f"{type(exc).__name__}: {exc}"


def _check_download_possible(spec: MonitorSpec, options: DetoxifyOptions) -> None:
    from detoxify.detoxify import MODEL_URLS

    url = MODEL_URLS[options.model_type]
    cached = _cached_checkpoint(url)
    if cached.exists():
        return
    reason = _probe(url, options.download_probe_timeout_s)
    if reason is not None:
        raise MonitorLoadError(
            f"monitor {spec.id!r}: cannot load Detoxify model {options.model_type!r}: no `checkpoint` "
            f"was given, it is not in the torch hub cache ({cached}), and its download URL {url} "
            f"is unreachable ({reason}). {_local_help(options.model_type)}"
        )


def _limit_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(threads)
    except RuntimeError:
        pass  # fixed once any inter-op work ran (a second monitor): the intra-op limit holds


def create(spec: MonitorSpec) -> DetoxifyMonitor:
    options = parse_options(spec, DetoxifyOptions)
    try:
        from detoxify import Detoxify
    except ImportError as exc:
        raise MonitorLoadError(
            f"monitor {spec.id!r}: the detoxify package is not installed ({exc}); "
            "pip install 'taxgate[detoxify]' (install the CPU or CUDA build of torch first)"
        ) from exc
    if options.checkpoint is None:
        _check_download_possible(spec, options)
        where = f"the released {options.model_type!r} weights"
    else:
        if not options.checkpoint.is_file():
            raise MonitorLoadError(f"monitor {spec.id!r}: checkpoint {options.checkpoint} does not exist")
        if options.config_path is not None and not options.config_path.is_dir():
            raise MonitorLoadError(f"monitor {spec.id!r}: config_path {options.config_path} is not a folder")
        where = f"checkpoint {options.checkpoint}"
    _limit_threads(options.threads)
    try:
        model = Detoxify(
            model_type=options.model_type,
            checkpoint=str(options.checkpoint) if options.checkpoint else None,
            device=options.device,
            huggingface_config_path=str(options.config_path) if options.config_path else None,
        )
    except Exception as exc:  # torch, transformers and urllib fail in many ways; name the model
        raise MonitorLoadError(
            f"monitor {spec.id!r}: Detoxify failed to load {where} on {options.device}: "
            f"{type(exc).__name__}: {exc}. {_local_help(options.model_type)}"
        ) from exc
    return DetoxifyMonitor(model, options.check_chars)
