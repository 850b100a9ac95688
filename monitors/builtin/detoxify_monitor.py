"""Detoxify: BERT-family toxicity classifiers (the ``detoxify`` package, extra ``taxgate[detoxify]``).

Options::

    model_type: original        # original | unbiased | multilingual | original-small | unbiased-small
    checkpoint: /models/detoxify.ckpt      # a local checkpoint instead of the download
    config_path: /models/hf-config         # its Hugging Face config + tokenizer folder
    device: cpu                            # or cuda
    download_probe_timeout_s: 5            # see below

Without ``checkpoint`` Detoxify downloads its released weights from GitHub on first
use. Its downloader has no timeout, so on a network that drops packets it would hang
the gateway's start; we first check the torch hub cache, then probe the host with a
short timeout, and fail with a message that says how to load a local checkpoint.
``loadtest.tiny_detoxify`` builds such a checkpoint (random weights) for tests and
benchmarks.
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
from monitors.registry import parse_options

ModelType = Literal["original", "unbiased", "multilingual", "original-small", "unbiased-small"]


class DetoxifyOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model_type: ModelType = "original"
    checkpoint: Path | None = None
    config_path: Path | None = None
    device: Literal["cpu", "cuda"] = "cpu"
    download_probe_timeout_s: float = Field(5.0, gt=0)


class DetoxifyMonitor(Monitor):
    """Scores whole texts; the score is the highest label probability."""

    def __init__(self, model: Any) -> None:
        self._model = model

    def check(self, texts: Sequence[str]) -> list[Finding]:
        if not texts:
            return []
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
    return DetoxifyMonitor(model)
