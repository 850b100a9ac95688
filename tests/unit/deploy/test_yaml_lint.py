"""Every YAML file in deploy/ passes yamllint (deploy/.yamllint.yaml)."""

from __future__ import annotations

import subprocess
import sys

from tests.unit.deploy import deployfiles as files


def test_yamllint_is_clean():
    result = subprocess.run(
        [sys.executable, "-m", "yamllint", "--strict", "-c", str(files.DEPLOY / ".yamllint.yaml"), str(files.DEPLOY)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
