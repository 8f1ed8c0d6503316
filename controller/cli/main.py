"""`stagectl`: plans, simulations and (later) the operator, from one command.

Each command declares its options and hands off to a library function; bad
input of any kind ends with exit status 2 and one message saying what is wrong.
"""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, NoReturn

import typer
import yaml

from controller.catalog import (
    DEFAULT_PLAN,
    DEFAULT_SCENARIO,
    NotFound,
    bundled_plans,
    bundled_scenarios,
    load_plan,
    load_scenario,
)
from phases.documents import DocumentError
from phases.durations import format_duration
from phases.plan import Plan

app = typer.Typer(
    name="stagectl",
    help="Progressive delivery of risky feature flags: plans, simulations and the rollout operator.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
plan_app = typer.Typer(help="Show, validate and draw rollout plans.", no_args_is_help=True)
app.add_typer(plan_app, name="plan")


class TableOrYaml(StrEnum):
    table = "table"
    yaml = "yaml"


class TableOrJson(StrEnum):
    table = "table"
    json = "json"


class GraphFormat(StrEnum):
    mermaid = "mermaid"
    dot = "dot"


def fail(message: str) -> NoReturn:
    """Print one clear message on stderr and exit with status 2 (bad input)."""
    typer.echo(f"stagectl: {message}", err=True)
    raise typer.Exit(2)


def _plan(reference: str) -> Plan:
    try:
        return load_plan(reference)
    except (DocumentError, NotFound) as error:
        fail(str(error))


PlanArgument = Annotated[
    str,
    typer.Argument(help=f"A plan file, or a bundled plan's name ({', '.join(bundled_plans())})."),
]


@plan_app.command("show")
def plan_show(
    plan: PlanArgument = DEFAULT_PLAN,
    output: Annotated[
        TableOrYaml, typer.Option("--output", "-o", help="table or yaml")
    ] = TableOrYaml.table,
) -> None:
    """Show a plan's steps: flags, durations, approvals, gates and triggers."""
    from controller.rendering import plan_table

    loaded = _plan(plan)
    if output is TableOrYaml.yaml:
        document = loaded.model_dump(mode="json", by_alias=True, exclude_defaults=True)
        typer.echo(f"# plan hash {loaded.content_hash}")
        typer.echo(yaml.safe_dump(document, sort_keys=False, allow_unicode=True), nl=False)
    else:
        typer.echo(plan_table(loaded))


@plan_app.command("validate")
def plan_validate(
    plan: Annotated[str, typer.Argument(help="A plan file or a bundled plan's name.")],
) -> None:
    """Check a plan; exit 0 and print its hash when it is valid, 2 with every problem when not."""
    from phases.steps import steps_of

    loaded = _plan(plan)
    steps = steps_of(loaded).steps
    typer.echo(
        f"{plan}: valid plan {loaded.name} v{loaded.version}, {len(steps)} steps, hash {loaded.content_hash}"
    )


@plan_app.command("graph")
def plan_graph(
    plan: PlanArgument = DEFAULT_PLAN,
    output_format: Annotated[
        GraphFormat, typer.Option("--format", "-f", help="mermaid or dot")
    ] = GraphFormat.mermaid,
) -> None:
    """Draw the plan's steps with their promote and rollback edges."""
    from controller.graphs import dot, mermaid

    loaded = _plan(plan)
    typer.echo(mermaid(loaded) if output_format is GraphFormat.mermaid else dot(loaded), nl=False)


@app.command("simulate")
def simulate_command(
    plan: Annotated[
        str, typer.Option("--plan", "-p", help="Plan file or bundled plan name.")
    ] = DEFAULT_PLAN,
    scenario: Annotated[
        str,
        typer.Option(
            "--scenario",
            "-s",
            help=f"Scenario file or bundled name ({', '.join(bundled_scenarios())}).",
        ),
    ] = DEFAULT_SCENARIO,
    output: Annotated[
        TableOrJson, typer.Option("--output", "-o", help="table or json")
    ] = TableOrJson.table,
    plot: Annotated[
        Path | None, typer.Option("--plot", help="Also write a PNG plot to this file.")
    ] = None,
) -> None:
    """Run a plan against a scripted scenario on a virtual clock; no cluster needed."""
    from controller.rendering import elapsed, table, transition_json, transition_rows
    from controller.simulation import simulate

    if plot is not None and plot.suffix.lower() != ".png":
        fail(f"--plot {plot}: the plot is written as PNG; give a file name ending in .png")
    loaded = _plan(plan)
    try:
        story = load_scenario(scenario, loaded)
    except (DocumentError, NotFound) as error:
        fail(str(error))
    result = simulate(loaded, story)
    start = story.start.timestamp()
    if plot is not None:
        from controller.plotting import plot_simulation

        plot_simulation(result, plot)
    if output is TableOrJson.json:
        document = {
            "plan": loaded.name,
            "plan_hash": loaded.content_hash,
            "scenario": story.name,
            "start": story.start.isoformat(),
            "ticks": result.ticks,
            "simulated_seconds": result.final_time_seconds,
            "final_step": result.final.step,
            "final_status": result.final.state.value,
            "final_percent": result.final_percent,
            "final_reason": result.final.reason,
            "flag_writes": result.flag_writes,
            "restarts": result.restarts,
            "jobs_created": [{"name": n, "attempt": a} for n, a in result.jobs_created],
            "transitions": [transition_json(t, start) for t in result.transitions],
            "events": [
                {
                    "at_seconds": at,
                    "kind": e.kind.value,
                    "step": e.step,
                    "message": e.message,
                    "warning": e.warning,
                }
                for at, e in result.events
            ],
        }
        typer.echo(json.dumps(document, indent=2))
        return
    typer.echo(
        f"simulating plan {loaded.name} ({loaded.short_hash}) with scenario {story.name}, tick {format_duration(story.tick)}"
    )
    typer.echo(
        table(["time", "from", "to", "trigger", "why"], transition_rows(result.transitions, start))
    )
    typer.echo(
        f"\nended at {elapsed(result.final_time_seconds)}: step {result.final.step}, {result.final.state.value}, "
        f"ENFORCEMENT_PERCENT={result.final_percent} ({result.ticks} ticks, {result.flag_writes} flag writes, "
        f"{result.restarts} restarts)"
    )
    if plot is not None:
        typer.echo(f"plot written to {plot}")


def run() -> None:
    """Console-script entry point."""
    try:
        app()
    except BrokenPipeError:
        sys.exit(0)
