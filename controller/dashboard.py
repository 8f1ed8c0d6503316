"""The Grafana dashboard for the runbook and the operator, generated from the bundled plan.

The runbook sends people to "Stage Validation → Shadow Mode panel". This module
builds that dashboard with grafana-foundation-sdk, Grafana's own typed builders,
so that its queries and thresholds come from the plan the operator runs: a canary
gate's panel draws the gate's threshold and the trigger's, and the queries are
the plan's signal queries, freshness guard included. `stagectl dashboard
generate -d manifests/grafana` writes it; a test fails when the file drifts, and
another evaluates every panel's PromQL against a real Prometheus.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from phases.plan import AdaptiveThreshold, Plan, SignalGate, SignalTrigger
from phases.steps import Step, steps_of

UID = "stage-validation"
FILE_NAME = "stage-validation.json"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
SHADOW_RATIO = "job:stage_validation_would_reject_ratio:rate5m"
SHADOW_BY_ENDPOINT = (
    'sum by (job, endpoint) (rate(stage_validation_validations_total{result="would_reject"}[5m]))'
    " / sum by (job, endpoint) (rate(stage_validation_validations_total[5m]))"
)


@dataclass(frozen=True, slots=True)
class PanelSpec:
    """One panel: what it shows, its queries (expr, legend) and its threshold steps."""

    title: str
    description: str
    queries: tuple[tuple[str, str], ...]
    unit: str = "none"
    thresholds: tuple[tuple[float, str], ...] = ()
    kind: str = "timeseries"
    width: int = 12


def dashboard_json(plan: Plan) -> str:
    """The dashboard as Grafana's JSON model, stable from one generation to the next."""
    from grafana_foundation_sdk.builders import dashboard
    from grafana_foundation_sdk.cog.encoder import JSONEncoder

    board = (
        dashboard.Dashboard("Stage Validation")
        .uid(UID)
        .tags(["stage-rollout", "runbook"])
        .description(
            f"Runbook stage-validation-v3 and the stage rollout operator; plan {plan.name} v{plan.version}"
        )
        .time("now-24h", "now")
        .refresh("1m")
        .with_variable(
            dashboard.DatasourceVariable("datasource").label("Prometheus").type("prometheus")
        )
    )
    for row, panels in sections(plan):
        board = board.with_row(dashboard.Row(row))
        for spec in panels:
            board = board.with_panel(_panel(spec))
    return json.dumps(board.build(), cls=JSONEncoder, indent=2, sort_keys=True) + "\n"


def sections(plan: Plan) -> Iterator[tuple[str, list[PanelSpec]]]:
    """The dashboard's rows, top to bottom, each with its panels."""
    yield "Shadow Mode (phase 2.7)", _shadow(plan)
    yield "Canary gates (phase 3)", list(_canary(plan))
    yield "Rollouts", _rollouts()
    yield "Operator health", _operator()


def _shadow(plan: Plan) -> list[PanelSpec]:
    limits = _limits(plan, "would_reject_ratio", phase="2.7")
    return [
        PanelSpec(
            "Shadow Mode: would-reject ratio",
            "Requests shadow mode would have rejected (runbook: must stay under 0.5 % for 48h before phase 3).",
            ((SHADOW_RATIO, "{{job}}"),),
            "percentunit",
            limits,
        ),
        PanelSpec(
            "Would-reject ratio by endpoint",
            "Which endpoints carry the invalid stages (runbook response: identify affected endpoints).",
            ((SHADOW_BY_ENDPOINT, "{{job}} {{endpoint}}"),),
            "percentunit",
            limits,
        ),
    ]


def _canary(plan: Plan) -> Iterator[PanelSpec]:
    """One panel per signal the phase-3 gates read, with its gate and rollback thresholds."""
    signals = sorted(
        {g.signal for s in _phase_steps(plan, "3") for g in s.gates if isinstance(g, SignalGate)}
    )
    for name in signals:
        signal = plan.signals[name]
        unit = "s" if signal.unit == "seconds" else "percentunit"
        yield PanelSpec(
            f"Canary gate: {name}",
            f"{signal.description}. Orange: a promotion gate's threshold; red: a rollback trigger's.",
            ((signal.query, name),),
            unit,
            _limits(plan, name, phase="3"),
            width=8,
        )


def _rollouts() -> list[PanelSpec]:
    return [
        PanelSpec(
            "Enforcement percent per rollout",
            "ENFORCEMENT_PERCENT each StageRollout holds.",
            (("stage_rollout_enforcement_percent", "{{namespace}}/{{rollout}}"),),
            "percent",
        ),
        PanelSpec(
            "Step and state per rollout",
            "The step each rollout is at, and its state.",
            (("stage_rollout_step_info == 1", "{{namespace}}/{{rollout}} {{step}} {{state}}"),),
            kind="table",
        ),
        PanelSpec(
            "Rollbacks and stalls",
            "Rollbacks in the last hour, and rollouts stalled now (past max duration without the gates).",
            (
                (
                    "sum by (namespace, rollout) (increase(stage_rollout_rollbacks_total[1h]))",
                    "rollbacks {{namespace}}/{{rollout}}",
                ),
                ("stage_rollout_stalled", "stalled {{namespace}}/{{rollout}}"),
            ),
            thresholds=((1, "red"),),
        ),
        PanelSpec(
            "Transitions by trigger",
            "Promotions, rollbacks, pauses and stalls in the last hour.",
            (("sum by (trigger) (increase(stage_rollout_transitions_total[1h]))", "{{trigger}}"),),
        ),
    ]


def _operator() -> list[PanelSpec]:
    return [
        PanelSpec(
            "Reconcile duration p99",
            "Time of one reconcile of one rollout.",
            (
                (
                    "histogram_quantile(0.99, sum by (le) (rate(stage_rollout_reconcile_duration_seconds_bucket[5m])))",
                    "p99",
                ),
            ),
            "s",
            width=8,
        ),
        PanelSpec(
            "Failed ticks by kind",
            "API, Prometheus, invalid spec or plan: each holds its rollout.",
            (("sum by (kind) (rate(stage_rollout_errors_total[5m]))", "{{kind}}"),),
            "ops",
            width=8,
        ),
        PanelSpec(
            "Replicas holding the leader Lease",
            "Exactly one replica must lead; 0 means nobody writes.",
            (("sum(stage_rollout_leader)", "leaders"),),
            thresholds=((1, "green"), (2, "red")),
            kind="stat",
            width=8,
        ),
        PanelSpec(
            "Unknown verdicts",
            "Gates and triggers without an answer (no data, Prometheus down): they hold, never promote.",
            (
                (
                    'sum by (namespace, rollout, name) (rate(stage_rollout_verdicts_total{outcome="unknown"}[5m]))',
                    "{{namespace}}/{{rollout}} {{name}}",
                ),
            ),
            "ops",
            width=24,
        ),
    ]


def _phase_steps(plan: Plan, phase: str) -> list[Step]:
    return [step for step in steps_of(plan).steps if step.phase_id == phase]


def _limits(plan: Plan, signal: str, *, phase: str) -> tuple[tuple[float, str], ...]:
    """Threshold steps: orange at each gate's (static or minimum) threshold, red at each trigger's."""
    found: dict[float, str] = {}
    for step in _phase_steps(plan, phase):
        for gate in step.gates:
            if isinstance(gate, SignalGate) and gate.signal == signal:
                found.setdefault(_static(gate.threshold), "orange")
        for trigger in step.triggers:
            if isinstance(trigger, SignalTrigger) and trigger.signal == signal:
                found[_static(trigger.threshold)] = "red"
    return tuple(sorted(found.items()))


def _static(threshold: float | AdaptiveThreshold) -> float:
    return threshold.min if isinstance(threshold, AdaptiveThreshold) else float(threshold)


def _panel(spec: PanelSpec) -> Any:
    from grafana_foundation_sdk.builders import (
        common,
        dashboard,
        prometheus,
        stat,
        table,
        timeseries,
    )
    from grafana_foundation_sdk.models.common import GraphThresholdsStyleMode
    from grafana_foundation_sdk.models.dashboard import DataSourceRef, Threshold, ThresholdsMode

    kinds: dict[str, Any] = {
        "timeseries": timeseries.Panel,
        "table": table.Panel,
        "stat": stat.Panel,
    }
    builder: Any = kinds[spec.kind]()
    builder = (
        builder.title(spec.title)
        .description(spec.description)
        .datasource(DataSourceRef(type_val=DATASOURCE["type"], uid=DATASOURCE["uid"]))
        .unit(spec.unit)
        .span(spec.width)
        .height(8)
        .thresholds(
            dashboard.ThresholdsConfig()
            .mode(ThresholdsMode.ABSOLUTE)
            .steps(
                [
                    Threshold(value=None, color="green"),
                    *(Threshold(value=v, color=c) for v, c in spec.thresholds),
                ]
            )
        )
    )
    if spec.kind == "timeseries" and spec.thresholds:
        builder = builder.thresholds_style(
            common.GraphThresholdsStyleConfig().mode(GraphThresholdsStyleMode.LINE)
        )
    for index, (expr, legend) in enumerate(spec.queries):
        query = prometheus.Dataquery().expr(expr).legend_format(legend).ref_id("ABCDEFGH"[index])
        builder = builder.with_target(
            query.instant() if spec.kind != "timeseries" else query.range()
        )
    return builder


def panel_queries(document: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, expr) of every query of a dashboard JSON document."""
    return [
        (panel["title"], target["expr"])
        for panel in document.get("panels", [])
        for target in panel.get("targets", [])
    ]
