"""The narrow seams between the drivers and the world, one or two methods each.

Each port has a live adapter (Prometheus, Kubernetes) and a scripted one for
`simulate`; tests put plain fake classes here, never patches of our functions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from phases.actions import RestartWorkloads, SetFlags, StartJob
from phases.needs import AlertReading
from phases.observations import Approval, Command, JobObservation, TargetState
from phases.verdicts import AlertHistory, WindowSummary


@dataclass(frozen=True, slots=True)
class WindowRequest:
    """One (query, window) a tick needs, ending at the tick's evaluation time."""

    query: str
    window: timedelta


class MetricsSource(Protocol):
    """Reads signals and alerts at a given evaluation time."""

    def summarize(self, signal: str, query: str, window: timedelta, at: datetime) -> WindowSummary:
        """Every sample of `query` over (at - window, at], reduced to a summary."""
        ...

    def firing_alerts(self, names: Sequence[str], at: datetime) -> AlertReading:
        """Which of the named alerts fire at `at`."""
        ...

    def average(self, signal: str, query: str, start: datetime, end: datetime) -> float | None:
        """The mean of `query` over [start, end], or None without data."""
        ...

    def alert_history(
        self, alerts: Sequence[str], coverage_query: str | None, window: timedelta, at: datetime
    ) -> AlertHistory:
        """The named alerts' activity over (at - window, at], and where the history has gaps."""
        ...

    def modes(self, query: str, at: datetime) -> tuple[float, ...] | None:
        """The observed-mode values, one per pod, or None when unreadable."""
        ...


class Target(Protocol):
    """The ConfigMap and workloads one rollout drives."""

    def observe(self, at: datetime) -> TargetState: ...

    def apply(self, action: SetFlags | RestartWorkloads, at: datetime) -> None: ...


class People(Protocol):
    """Approvals and commands given for one rollout."""

    def approvals(self, at: datetime) -> Sequence[Approval]: ...

    def commands(self, at: datetime) -> Sequence[Command]: ...


class Jobs(Protocol):
    """The plan jobs of one rollout."""

    def observe(self, at: datetime) -> Mapping[str, JobObservation]: ...

    def start(self, action: StartJob, at: datetime) -> None: ...
