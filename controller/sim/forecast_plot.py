"""The forecast plot: when the rollout completes, how long each step takes, what goes wrong.

matplotlib is imported only when a plot is asked for, so that the CLI starts fast.
"""

from __future__ import annotations

from pathlib import Path

from controller.sim.forecast import Forecast


def plot_forecast(result: Forecast, path: Path) -> None:
    """Write a PNG: completion-time histogram, time per step, rollback and stall odds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (done, steps, risks) = plt.subplots(3, 1, figsize=(10, 10))
    hours = [seconds / 3600 for seconds in result.completion_times]
    done.hist(hours or [0.0], bins=30)
    done.set_title(
        f"completion time over {result.runs} runs ({result.probability_completed():.0%} completed)"
    )
    done.set_xlabel("hours")
    per_step = result.step_times()
    steps.boxplot(
        [[s / 3600 for s in times] for times in per_step.values()], tick_labels=list(per_step)
    )
    steps.set_ylabel("hours in step")
    odds = {f"{a}→{b}": p for (a, b), p in result.rollback_probabilities().items()}
    odds |= {f"stall {s}": p for s, p in result.stall_probabilities().items()}
    risks.bar(list(odds) or ["none"], list(odds.values()) or [0.0])
    risks.set_ylabel("probability")
    risks.tick_params(axis="x", labelrotation=40)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
