"""Every moment at which `decide` or `needs_of` compares `now` differently, for one status.

With the same status and the same observations, the decision core reads `now`
only through these comparisons (each with the function that makes it):

- the soak: `in_effect_at + soak_paused + min_duration` (`_gate_blockers`,
  `needs_of`: idle gates and baselines); frozen while `paused_at` is set;
- the max duration: `deadline_from + deadline_paused + max_duration`
  (`_consider_promotion`); frozen while paused;
- a gate's window covered by the step: `in_effect_at + reach` (`_gate_blockers`);
- the degradation window: `in_effect_at + degradation_window + longest_trigger`
  (`degradation_window_open`) and `+ each trigger's for` (`_in_degradation_window`);
- a trigger's evidence lying after its floor (`flags_applied_at`, or the moment
  the trigger was seen clear on a restored step): `floor + for + the query's
  lookback` (`_evidence_start`; an alert trigger's evidence starts at most `for`
  ago, so no lookback);
- the promotion window and approvals' expiry, which are not status clocks: the
  caller takes them from the plan and the observations.

Times written into the new status (`at=now` of a transition, a job's start) do
not decide anything until they are in the status, where this function sees them.
A comparison added to the core must be added here: the event-driven simulator
skips every tick between two of these moments whose inputs are unchanged, and
its equivalence test against ticking at every tick fails on a missing one.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

from phases.needs import query_lookback
from phases.plan import Plan, SignalTrigger
from phases.status import RolloutStatus
from phases.steps import Step, TriggerSpec, steps_of


def clock_thresholds(plan: Plan, status: RolloutStatus) -> frozenset[datetime]:
    """The moments at which a comparison of `now` with this status's clocks can flip.

    Each moment is the boundary itself: a strict comparison flips just after it.
    """
    step = steps_of(plan).by_id.get(status.step)
    if step is None:
        return frozenset()
    return frozenset((*_step_clocks(step, status), *_trigger_clocks(plan, step, status)))


def _step_clocks(step: Step, status: RolloutStatus) -> Iterator[datetime]:
    running = status.paused_at is None
    in_effect_at = status.in_effect_at
    if in_effect_at is not None:
        if running:
            yield in_effect_at + status.soak_paused + step.min_duration
        for reach in step.gate_windows:
            if reach is not None:
                yield in_effect_at + reach
        degradation = in_effect_at + step.degradation_window
        yield degradation + step.longest_trigger
        for trigger in step.triggers:
            yield degradation + _sustained(trigger)
    if running and step.max_duration is not None:
        yield status.deadline_from + status.deadline_paused + step.max_duration


def _trigger_clocks(plan: Plan, step: Step, status: RolloutStatus) -> Iterator[datetime]:
    for trigger in step.triggers:
        floors = (status.flags_applied_at, status.triggers_cleared_at.get(trigger.key))
        for floor in floors:
            if floor is not None:
                yield floor + (evidence_reach(plan, trigger) or timedelta(0))


def _sustained(trigger: TriggerSpec) -> timedelta:
    return trigger.sustained_for or timedelta(0)


def evidence_reach(plan: Plan, trigger: TriggerSpec) -> timedelta | None:
    """How long after its floor a trigger's evidence can first lie entirely after it
    (None: an alert trigger without `for`, whose evidence is the alert firing now)."""
    if isinstance(trigger, SignalTrigger):
        return trigger.sustained_for + query_lookback(plan.signals[trigger.signal].query)
    return trigger.sustained_for
