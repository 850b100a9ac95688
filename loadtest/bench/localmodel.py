"""Random-weight Detoxify checkpoints for machines that cannot download the real weights.

Built once per preset by ``python -m loadtest.tiny_detoxify`` in a child process (it
imports torch, which the bench itself does not need) and cached, since the
bert-base preset writes ~440 MB.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

from loadtest.bench.procs import PROJECT_ROOT, child_env
from loadtest.harness import ProcessError, log_tail

CHECKPOINT = "detoxify.ckpt"
CONFIG_DIR = "hf-config"
# Written last: a build that was interrupted has no marker and is redone. (Building
# elsewhere and renaming would not do: the checkpoint records its config folder's path.)
COMPLETE = "COMPLETE"
PRESETS = ("tiny", "bert-base")


def builder_version() -> str:
    """A digest of the builder's source: a fixed or changed builder gets a fresh cache entry
    instead of a stale model that survives the fix."""
    import loadtest.tiny_detoxify as builder

    return hashlib.sha256(Path(builder.__file__).read_bytes()).hexdigest()[:12]


def local_detoxify(preset: str, cache_dir: Path, log_dir: Path) -> tuple[Path, Path]:
    """``(checkpoint, config_dir)`` of the cached model, building it on first use."""
    if preset not in PRESETS:
        raise ValueError(f"unknown local Detoxify preset {preset!r}: use {' or '.join(PRESETS)}")
    target = (cache_dir / f"detoxify-{preset}-{builder_version()}").resolve()
    checkpoint, config_dir = target / CHECKPOINT, target / CONFIG_DIR
    if (target / COMPLETE).is_file():
        return checkpoint, config_dir
    shutil.rmtree(target, ignore_errors=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"build-detoxify-{preset}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "loadtest.tiny_detoxify", str(target)]
    if preset == "bert-base":
        argv.append("--bert-base")
    with log_path.open("wb") as log:
        code = subprocess.run(
            argv, stdout=log, stderr=subprocess.STDOUT, env=child_env(), cwd=PROJECT_ROOT, stdin=subprocess.DEVNULL
        ).returncode
    if code != 0 or not checkpoint.is_file():
        raise ProcessError(
            f"building the local Detoxify model ({preset}) failed with status {code}; "
            f"is the detoxify extra installed (pip install 'taxgate[detoxify]')?\n"
            f"  log: {log_path}\n--- last lines ---\n{log_tail(log_path)}"
        )
    (target / COMPLETE).write_text("built by taxgate bench\n", encoding="utf-8")
    return checkpoint, config_dir
