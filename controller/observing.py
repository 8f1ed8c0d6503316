"""One tick's observation and actuation for one rollout, shared by every driver.

`observe` asks the ports for exactly what `phases.needs` lists (each identical
read once) and judges it with the core's rules; `actuate` hands the decision's
actions to the ports. The operator, `simulate` and `replay` all call these two.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from controller.ports import Jobs, MetricsSource, People, Target, WindowRequest
from phases.actions import Action, RecordBaseline, RestartWorkloads, SetFlags, StartJob
from phases.needs import AlertReading, Needs, judge, mode_from_value
from phases.observations import Observations, TargetState
from phases.plan import Plan
from phases.status import RolloutStatus
from phases.verdicts import AlertHistory, Verdict, WindowSummary

_NO_ALERTS = AlertReading(frozenset())


class JudgeMemo:
    """The last tick's verdicts, reused when every reading is the very same object.

    A steady signal gives the same summary object tick after tick (sources cache
    them), and verdicts are a pure function of the readings, so a long soak need
    not judge the same windows again. The memo holds the objects it compares, so
    their identities cannot be reused; one memo serves one run of one rollout.
    """

    def __init__(self) -> None:
        self._key: tuple[object, ...] = ()
        self._verdicts: tuple[dict[str, Verdict], dict[str, Verdict]] | None = None

    def judge(
        self,
        plan: Plan,
        status: RolloutStatus,
        needs: Needs,
        summaries: dict[tuple[str, timedelta], WindowSummary],
        alerts: AlertReading,
        histories: dict[tuple[tuple[str, ...], timedelta], AlertHistory] | None = None,
    ) -> tuple[dict[str, Verdict], dict[str, Verdict]]:
        key = (
            needs.windows,
            needs.alerts,
            needs.alert_windows,
            alerts,
            status.baselines,
            *summaries.values(),
            *(histories or {}).values(),
        )
        if (
            self._verdicts is not None
            and len(key) == len(self._key)
            and all(a is b for a, b in zip(key, self._key, strict=True))
        ):
            return self._verdicts
        self._key = key
        self._verdicts = judge(plan, status, needs, summaries, alerts, histories)
        return self._verdicts


def observe(
    plan: Plan,
    status: RolloutStatus,
    needs: Needs,
    now: datetime,
    *,
    rollout_uid: str,
    metrics: MetricsSource,
    target: Target,
    people: People,
    jobs: Jobs,
    memo: JudgeMemo | None = None,
) -> Observations:
    """Everything `decide` needs for this tick, read through the ports."""
    summaries: dict[tuple[str, timedelta], WindowSummary] = {}
    for check in needs.windows:
        key = (check.query, check.window)
        if key not in summaries:
            summaries[key] = metrics.summarize(check.signal, check.query, check.window, now)
    alerts = metrics.firing_alerts(needs.alert_names, now) if needs.alerts else _NO_ALERTS
    histories = read_alert_histories(needs, now, metrics)
    if memo is not None:
        gates, triggers = memo.judge(plan, status, needs, summaries, alerts, histories)
    else:
        gates, triggers = judge(plan, status, needs, summaries, alerts, histories)
    baselines = (
        {
            check.signal: metrics.average(check.signal, check.query, check.since, now)
            for check in needs.baselines
        }
        if needs.baselines
        else {}
    )
    seen_target = target.observe(now)
    if needs.mode_query is not None and seen_target.observed_modes is None:
        seen_target = _with_modes(plan, seen_target, metrics.modes(needs.mode_query, now))
    return Observations(
        rollout_uid=rollout_uid,
        target=seen_target,
        gates=gates,
        triggers=triggers,
        baselines=baselines,
        approvals=people.approvals(now),
        commands=people.commands(now),
        jobs=jobs.observe(now),
    )


def window_requests(needs: Needs) -> list[WindowRequest]:
    """The signal windows of a tick, and the coverage windows its alert histories read."""
    requests_ = [WindowRequest(c.query, c.window) for c in needs.windows]
    requests_ += [
        WindowRequest(c.coverage_query, c.window)
        for c in needs.alert_windows
        if c.coverage_query is not None
    ]
    return requests_


def read_alert_histories(
    needs: Needs, now: datetime, metrics: MetricsSource
) -> dict[tuple[tuple[str, ...], timedelta], AlertHistory]:
    """Each distinct alert history the checks need, read once."""
    histories: dict[tuple[tuple[str, ...], timedelta], AlertHistory] = {}
    for check in needs.alert_windows:
        if check.read_key not in histories:
            histories[check.read_key] = metrics.alert_history(
                check.alerts, check.coverage_query, check.window, now
            )
    return histories


def _with_modes(plan: Plan, target: TargetState, values: tuple[float, ...] | None) -> TargetState:
    if values is None:
        return target
    modes = tuple(mode_from_value(plan, value) or f"unknown({value:g})" for value in values)
    return replace(target, observed_modes=modes)


def actuate(
    actions: tuple[Action, ...], now: datetime, *, target: Target, jobs: Jobs
) -> list[RecordBaseline]:
    """Apply the decision's actions; return the baselines to export (driver's business)."""
    baselines: list[RecordBaseline] = []
    for action in actions:
        if isinstance(action, SetFlags | RestartWorkloads):
            target.apply(action, now)
        elif isinstance(action, StartJob):
            jobs.start(action, now)
        else:
            baselines.append(action)
    return baselines
