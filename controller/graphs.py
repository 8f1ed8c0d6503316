"""The plan's step machine drawn as Mermaid or Graphviz DOT text.

The edges come from the `transitions` machine itself, so the drawing cannot
disagree with what the controller does. Step ids such as `3@10` are not valid
Mermaid identifiers, hence the generated node names with the ids as labels.
"""

from __future__ import annotations

from phases.machine import machines_for
from phases.plan import Plan
from phases.steps import Step


def _label(plan: Plan, step: Step) -> str:
    extras = [step.mode] if step.mode else []
    if plan.flag_set.exposure is not None:
        extras.append(f"{step.percent}%")
    if step.flags.get("ENFORCE_WRITE_ONLY") == "true":
        extras.append("write-only")
    if step.flags.get("STAGE_VALIDATION_DRY_RUN") == "true":
        extras.append("dry-run")
    return f"{step.id} · {' · '.join(extras)}"


def _edge_label(plan: Plan, source: str, trigger: str) -> str:
    step = machines_for(plan).table.get(source)
    if trigger == "promote":
        return "promote (approval)" if step.approval.required else "promote"
    return "rollback" if step.on_degradation == "rollback" else "rollback (by command)"


def mermaid(plan: Plan) -> str:
    machines = machines_for(plan)
    names = {step.id: f"s{step.index}" for step in machines.table.steps}
    lines = ["stateDiagram-v2", "  direction LR"]
    lines += [
        f'  state "{_label(plan, step)}" as {names[step.id]}' for step in machines.table.steps
    ]
    lines.append(f"  [*] --> {names[machines.table.first.id]}")
    for source, trigger, dest in machines.edges():
        lines.append(f"  {names[source]} --> {names[dest]}: {_edge_label(plan, source, trigger)}")
    lines.append(f"  {names[machines.table.steps[-1].id]} --> [*]: complete")
    return "\n".join(lines) + "\n"


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def dot(plan: Plan) -> str:
    machines = machines_for(plan)
    lines = [
        f"digraph {_quote(plan.name)} {{",
        "  rankdir=LR;",
        "  node [shape=box, style=rounded];",
    ]
    lines += [
        f"  {_quote(step.id)} [label={_quote(_label(plan, step))}];"
        for step in machines.table.steps
    ]
    for source, trigger, dest in machines.edges():
        style = "solid" if trigger == "promote" else "dashed"
        lines.append(
            f"  {_quote(source)} -> {_quote(dest)} [label={_quote(_edge_label(plan, source, trigger))}, style={style}];"
        )
    lines.append("}")
    return "\n".join(lines) + "\n"
