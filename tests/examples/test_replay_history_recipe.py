"""The replay recipe in examples/replay_history, run as its README says, in a short mode."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.prometheus
def test_the_recipe_builds_a_prometheus_with_history_and_replays_a_rollback(
    prometheus_binary: object, tmp_path: Path
) -> None:
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "examples.replay_history.build",
            "--days",
            "2",
            "--dir",
            str(tmp_path / "history"),
            "--error-spike-at",
            "1d12h",
            "--replay",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert "accepts all 6 signal queries" in run.stdout
    assert "no data" not in run.stdout + run.stderr  # every signal has history to read
    timeline = run.stdout.split("replaying plan stage-validation-v3", 1)[1]
    rollbacks = [line for line in timeline.splitlines() if "  rollback  " in line]
    assert len(rollbacks) == 1 and rollbacks[0].startswith("+1d 12:"), timeline
    assert "error-rate-above-5pct" in rollbacks[0]


def test_the_recipe_refuses_a_directory_that_holds_something(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("mine", encoding="utf-8")
    run = subprocess.run(
        [sys.executable, "-m", "examples.replay_history.build", "--dir", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 2
    assert "not an empty directory; give a new one" in run.stderr
    assert (tmp_path / "keep.txt").read_text(encoding="utf-8") == "mine"
