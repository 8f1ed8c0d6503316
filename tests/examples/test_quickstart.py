"""The README's quickstart, run by its script in the short, unattended mode."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.prometheus
def test_the_quickstart_walks_approve_spike_and_rollback_with_the_real_operator(
    prometheus_binary: object,
) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "examples.quickstart.run", "--auto", "--short"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    out = run.stdout
    # The namespace came from the kubeconfig context: no -n anywhere.
    assert "approved leaving shadow of demo as you@example.com" in out
    history = out.split("$ stagectl history demo", 1)[1]
    assert "shadow → enforce@50  promote: all gates passed; approved by you@example.com" in history
    assert "enforce@50 → shadow  rollback: degradation: errors-high" in history
    assert "Traceback" not in run.stderr
