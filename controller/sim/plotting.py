"""The simulation plot: enforcement percentage and signals over time, transitions marked.

matplotlib is imported here only, and only when a plot is asked for, so that the
CLI starts fast.
"""

from __future__ import annotations

from pathlib import Path

from controller.sim.simulation import SimulationResult


def plot_simulation(result: SimulationResult, path: Path) -> None:
    """Write a PNG: percent on top, one panel per scripted signal, transitions as lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scenario = result.scenario
    if scenario is None:
        raise ValueError("a simulation plot needs the scenario the simulation ran")
    signals = scenario.signals
    end_hours = (result.final_time_seconds or 1.0) / 3600
    fig, axes = plt.subplots(
        1 + len(signals), 1, sharex=True, figsize=(11, 2.2 * (1 + len(signals)))
    )
    axes_list = list(axes) if len(signals) else [axes]
    times = [seconds / 3600 for seconds, _ in result.percent_changes] + [end_hours]
    percents = [percent for _, percent in result.percent_changes]
    percent_axis = axes_list[0]
    percent_axis.step(
        times, [*percents, percents[-1] if percents else 0], where="post", color="tab:blue"
    )
    percent_axis.set_ylabel("ENFORCEMENT_PERCENT")
    percent_axis.set_ylim(-5, 105)
    percent_axis.set_title(f"{result.plan.name} — scenario {scenario.name}")
    for axis, (name, points) in zip(axes_list[1:], signals.items(), strict=True):
        xs = [p.at.total_seconds() / 3600 for p in points] + [end_hours]
        ys = [p.value if p.value is not None else float("nan") for p in points]
        axis.step(xs, [*ys, ys[-1]], where="post", color="tab:orange")
        axis.set_ylabel(name, fontsize=8)
        for outage in scenario.outages:
            axis.axvspan(
                outage.start.total_seconds() / 3600, outage.end.total_seconds() / 3600, color="0.85"
            )
    for transition in result.transitions:
        if transition.trigger not in ("promote", "rollback", "complete", "stall", "pause"):
            continue
        hours = (transition.at - result.start).total_seconds() / 3600
        colour = {"rollback": "red", "stall": "purple", "pause": "orange"}.get(
            transition.trigger, "green"
        )
        for axis in axes_list:
            axis.axvline(hours, color=colour, linewidth=0.8, alpha=0.7)
        percent_axis.annotate(
            transition.to_step,
            (hours, 100),
            fontsize=7,
            rotation=90,
            va="top",
            ha="right",
            color=colour,
        )
    axes_list[-1].set_xlabel("hours since start")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
