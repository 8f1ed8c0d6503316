"""`stagectl`: plans, simulations and (later) the operator, from one command.

Each command declares its options and hands off to a library function; bad
input of any kind ends with exit status 2 and one message saying what is wrong.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

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
    read_plan,
)
from controller.cli import rollout_commands
from controller.cli.errors import fail

if TYPE_CHECKING:
    from controller.driving import RunResult
    from controller.notifications import Notifier
    from controller.prometheus.source import PrometheusSettings
    from controller.sim.scenario import Scenario
    from phases.plan import Plan

app = typer.Typer(
    name="stagectl",
    help="Progressive delivery of risky feature flags: plans, simulations and the rollout operator.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain click help: rich's help renderer alone takes longer to import (about
    # 170 ms) than `stagectl --help` may take in all.
    rich_markup_mode=None,
)
plan_app = typer.Typer(help="Show, validate and draw rollout plans.", no_args_is_help=True)
app.add_typer(plan_app, name="plan")
rollout_commands.register(app)
crd_app = typer.Typer(help="The operator's CustomResourceDefinitions.", no_args_is_help=True)
app.add_typer(crd_app, name="crd")


class TableOrYaml(StrEnum):
    table = "table"
    yaml = "yaml"


class TableOrJson(StrEnum):
    table = "table"
    json = "json"


class ApprovalChoice(StrEnum):
    auto = "auto"
    none = "none"


class GraphFormat(StrEnum):
    mermaid = "mermaid"
    dot = "dot"


def _plan(reference: str) -> Plan:
    from phases.documents import DocumentError

    try:
        return load_plan(reference)
    except (DocumentError, NotFound) as error:
        fail(str(error))


PrometheusUrl = Annotated[
    str,
    typer.Option(
        "--prometheus",
        help="Prometheus base URL, e.g. http://127.0.0.1:9090.",
        envvar="STAGECTL_PROMETHEUS_URL",
    ),
]
TokenFile = Annotated[
    Path | None,
    typer.Option(
        "--bearer-token-file", help="File holding a bearer token (read again when it changes)."
    ),
]
CaFile = Annotated[
    Path | None, typer.Option("--ca-file", help="CA bundle for an https Prometheus.")
]
Insecure = Annotated[
    bool,
    typer.Option("--insecure-skip-verify", help="Do not verify the Prometheus TLS certificate."),
]
QueryTimeout = Annotated[
    str, typer.Option("--query-timeout", help="Timeout of one query (e.g. 10s).")
]


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
    prometheus: Annotated[
        str | None,
        typer.Option("--prometheus", help="Also have this Prometheus check every signal's PromQL."),
    ] = None,
    bearer_token_file: TokenFile = None,
    ca_file: CaFile = None,
    insecure_skip_verify: Insecure = False,
    query_timeout: QueryTimeout = "10s",
) -> None:
    """Check a plan; exit 0 and print its hash when it is valid, 2 with every problem when not."""
    from phases.steps import steps_of

    loaded = _plan(plan)
    steps = steps_of(loaded).steps
    checked = ""
    if prometheus is not None:
        checked = _check_queries(
            plan,
            loaded,
            prometheus,
            bearer_token_file,
            ca_file,
            insecure_skip_verify,
            query_timeout,
        )
    typer.echo(
        f"{plan}: valid plan {loaded.name} v{loaded.version}, {len(steps)} steps, hash {loaded.content_hash}{checked}"
    )


def _check_queries(
    reference: str,
    plan: Plan,
    url: str,
    bearer_token_file: Path | None,
    ca_file: Path | None,
    insecure: bool,
    timeout: str,
) -> str:
    """Have Prometheus evaluate every signal once; fail with each query it rejects, located."""
    from controller.clock import SystemClock
    from controller.prometheus.source import PrometheusSource
    from phases.documents import Problem, locate

    settings = _prometheus_settings(url, timeout, bearer_token_file, ca_file, insecure)
    source = PrometheusSource(settings, plan.evaluation.resolution)
    now = SystemClock().now()
    try:
        unreachable = source.check_query("vector(1)", now)
        if unreachable is not None:
            fail(f"--prometheus {url}: {unreachable}")
        problems = [
            Problem(("signals", name, "query"), complaint)
            for name, signal in plan.signals.items()
            if (complaint := source.check_query(signal.query, now)) is not None
        ]
    finally:
        source.close()
    text, source_name = read_plan(reference)
    error = locate(text, source_name, "plan", problems)
    if error is not None:
        fail(str(error))
    return f"; Prometheus at {url} accepts all {len(plan.signals)} signal queries"


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
    forecast: Annotated[
        int | None,
        typer.Option(
            "--forecast",
            min=1,
            max=100_000,
            help="Run N times, drawing what the scenario's forecast section makes random.",
        ),
    ] = None,
) -> None:
    """Run a plan against a scripted scenario on a virtual clock; no cluster needed."""
    from controller.sim.simulation import simulate
    from phases.documents import DocumentError
    from phases.durations import format_duration

    if plot is not None and plot.suffix.lower() != ".png":
        fail(f"--plot {plot}: the plot is written as PNG; give a file name ending in .png")
    loaded = _plan(plan)
    try:
        story = load_scenario(scenario, loaded)
    except (DocumentError, NotFound) as error:
        fail(str(error))
    if forecast is not None:
        _print_forecast(loaded, story, forecast, output, plot)
        return
    result = simulate(loaded, story)
    if plot is not None:
        from controller.sim.plotting import plot_simulation

        plot_simulation(result, plot)
    extra = {
        "scenario": story.name,
        "jobs_created": [{"name": n, "attempt": a} for n, a in result.jobs_created],
    }
    title = f"simulating plan {loaded.name} ({loaded.short_hash}) with scenario {story.name}, tick {format_duration(story.tick)}"
    _print_run(result, output, title, extra)
    if plot is not None and output is TableOrJson.table:
        typer.echo(f"plot written to {plot}")


def _print_forecast(
    plan: Plan, scenario: Scenario, runs: int, output: TableOrJson, plot: Path | None
) -> None:
    from controller.sim.forecast import forecast, forecast_document, forecast_table

    if scenario.forecast is None:
        fail(f"--forecast: scenario {scenario.name} has no forecast section saying what varies")
    result = forecast(plan, scenario, runs)
    if plot is not None:
        from controller.sim.forecast_plot import plot_forecast

        plot_forecast(result, plot)
    if output is TableOrJson.json:
        typer.echo(json.dumps({"scenario": scenario.name, **forecast_document(result)}, indent=2))
        return
    typer.echo(f"forecast of plan {plan.name} ({plan.short_hash}) over scenario {scenario.name}")
    typer.echo(forecast_table(result))
    if plot is not None:
        typer.echo(f"plot written to {plot}")


def _print_run(
    result: RunResult, output: TableOrJson, title: str, extra: Mapping[str, object]
) -> None:
    from controller.rendering import run_document, run_table

    if output is TableOrJson.json:
        typer.echo(json.dumps({**run_document(result), **extra}, indent=2))
    else:
        typer.echo(title)
        typer.echo(run_table(result))


def _moment(option: str, text: str) -> datetime:
    """An ISO 8601 time with an offset, `now`, or `now-3d` style."""
    from controller.clock import SystemClock
    from phases.durations import parse_duration

    cleaned = text.strip()
    if cleaned.startswith("now"):
        rest = cleaned[3:]
        try:
            offset = parse_duration(rest[1:]) if rest else timedelta(0)
        except ValueError as error:
            fail(f"{option} {text!r}: {error}")
        if rest and rest[0] not in "+-":
            fail(f"{option} {text!r}: write now, now-3d or now+1h")
        return SystemClock().now() + (offset if rest.startswith("+") else -offset)
    try:
        moment = datetime.fromisoformat(cleaned.replace("Z", "+00:00"))
    except ValueError:
        fail(
            f"{option} {text!r} is not a time: use ISO 8601 with an offset (2026-11-20T00:00:00Z) or now-3d"
        )
    if moment.tzinfo is None:
        fail(f"{option} {text!r} has no time zone: add Z or an offset such as +01:00")
    return moment


def _prometheus_settings(
    url: str, timeout: str, bearer_token_file: Path | None, ca_file: Path | None, insecure: bool
) -> PrometheusSettings:
    from pydantic import ValidationError

    from controller.prometheus.source import PrometheusSettings

    try:
        return PrometheusSettings(
            url=url,
            timeout=timeout,
            bearer_token_file=bearer_token_file,
            ca_file=ca_file,
            insecure_skip_verify=insecure,
        )
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'prometheus'}: {e['msg'].removeprefix('Value error, ')}"
            for e in error.errors()
        )
        fail(f"Prometheus settings: {problems}")


@app.command("replay")
def replay_command(
    prometheus: PrometheusUrl,
    start: Annotated[
        str,
        typer.Option(
            "--start", help="Start of the past window: ISO 8601 with an offset, or now-3d."
        ),
    ],
    end: Annotated[
        str, typer.Option("--end", help="End of the window: ISO 8601 with an offset, or now.")
    ] = "now",
    plan: Annotated[
        str, typer.Option("--plan", "-p", help="Plan file or bundled plan name.")
    ] = DEFAULT_PLAN,
    tick: Annotated[
        str, typer.Option("--tick", help="Virtual time between two ticks (e.g. 1m, 10m).")
    ] = "5m",
    approvals: Annotated[
        ApprovalChoice,
        typer.Option("--approvals", help="auto: approve every step at once; none: never."),
    ] = ApprovalChoice.auto,
    output: Annotated[
        TableOrJson, typer.Option("--output", "-o", help="table or json")
    ] = TableOrJson.table,
    bearer_token_file: TokenFile = None,
    ca_file: CaFile = None,
    insecure_skip_verify: Insecure = False,
    query_timeout: QueryTimeout = "10s",
) -> None:
    """Show what the controller would have done over a past window of a real Prometheus."""
    from controller.prometheus.source import PrometheusSource
    from controller.sim.replay import replay
    from phases.durations import format_duration, parse_duration

    loaded = _plan(plan)
    begin, finish = _moment("--start", start), _moment("--end", end)
    if finish <= begin:
        fail(f"--end {finish.isoformat()} is not after --start {begin.isoformat()}")
    try:
        step = parse_duration(tick)
    except ValueError as error:
        fail(f"--tick {tick!r}: {error}")
    if step <= timedelta(0):
        fail("--tick must be longer than 0s")
    settings = _prometheus_settings(
        prometheus, query_timeout, bearer_token_file, ca_file, insecure_skip_verify
    )
    source = PrometheusSource(settings, loaded.evaluation.resolution)
    unreachable = source.check_query("vector(1)", finish)
    if unreachable is not None:
        source.close()
        fail(f"--prometheus {prometheus}: {unreachable}")
    try:
        result = replay(
            loaded, source, start=begin, end=finish, tick=step, approvals=approvals.value
        )
    finally:
        source.close()
    extra = {
        "prometheus": prometheus,
        "end": finish.isoformat(),
        "queries_sent": source.queries_sent,
    }
    title = f"replaying plan {loaded.name} ({loaded.short_hash}) over {begin.isoformat()} .. {finish.isoformat()}, tick {format_duration(step)}, approvals {approvals.value}"
    _print_run(result, output, title, extra)


@app.command("run")
def run_operator(
    kubeconfig: Annotated[
        str | None,
        typer.Option(
            "--kubeconfig",
            help="Kubeconfig file; in-cluster config when absent.",
            envvar="KUBECONFIG",
        ),
    ] = None,
    context: Annotated[str | None, typer.Option("--context", help="Kubeconfig context.")] = None,
    namespace: Annotated[
        str | None,
        typer.Option("--namespace", "-n", help="Watch one namespace; all namespaces when absent."),
    ] = None,
    prometheus_url: Annotated[
        str | None,
        typer.Option(
            "--prometheus-url",
            help="Prometheus for rollouts without spec.prometheus.",
            envvar="STAGECTL_PROMETHEUS_URL",
        ),
    ] = None,
    interval: Annotated[
        str, typer.Option("--interval", help="Default time between ticks of a rollout.")
    ] = "30s",
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run", help="Observe and decide, log what would be written, write nothing."
        ),
    ] = False,
    metrics_port: Annotated[
        int, typer.Option("--metrics-port", help="Port of /metrics, /healthz and /readyz.")
    ] = 8080,
    leader_elect: Annotated[
        bool, typer.Option("--leader-elect", help="Hold a Lease so that only one replica writes.")
    ] = False,
    lease_namespace: Annotated[
        str,
        typer.Option(
            "--lease-namespace", help="Namespace of the leader Lease.", envvar="POD_NAMESPACE"
        ),
    ] = "stage-rollout-system",
    identity: Annotated[
        str | None,
        typer.Option("--identity", help="This replica's name in the Lease.", envvar="POD_NAME"),
    ] = None,
    log_level: Annotated[
        str, typer.Option("--log-level", help="debug, info, warning or error.")
    ] = "info",
    notifications: Annotated[
        Path | None,
        typer.Option(
            "--notifications",
            help="YAML list of webhook sinks (url, kind json|slack, timeout, headers).",
        ),
    ] = None,
) -> None:
    """Run the operator: reconcile every StageRollout it can see until stopped."""
    import signal
    import socket

    from controller.kube.api import ROLLOUTS, KubeApi, KubeError, load_api_client
    from controller.operator import Operator, OperatorSettings
    from controller.telemetry import configure_logging
    from phases.durations import parse_duration

    if log_level.lower() not in ("debug", "info", "warning", "error"):
        fail(f"--log-level {log_level!r}: use debug, info, warning or error")
    try:
        tick = parse_duration(interval)
    except ValueError as error:
        fail(f"--interval {interval!r}: {error}")
    if tick < timedelta(seconds=1):
        fail("--interval must be at least 1s")
    if not 0 < metrics_port < 65536:
        fail(f"--metrics-port {metrics_port} is not a port number")
    if prometheus_url is not None:
        _prometheus_settings(prometheus_url, "10s", None, None, False)
    notifier = _notifier(notifications) if notifications is not None else None
    configure_logging(log_level)
    try:
        api = KubeApi(load_api_client(kubeconfig, context))
        api.list(ROLLOUTS, namespace)
    except KubeError as error:
        fail(str(error))
    settings = OperatorSettings(
        namespace=namespace,
        prometheus_url=prometheus_url,
        interval=tick,
        dry_run=dry_run,
        metrics_port=metrics_port,
        leader_elect=leader_elect,
        lease_namespace=lease_namespace,
        identity=identity or socket.gethostname(),
    )
    operator = Operator(api, settings, notifier=notifier)
    signal.signal(signal.SIGTERM, lambda *_: operator.stop.set())
    signal.signal(signal.SIGINT, lambda *_: operator.stop.set())
    operator.run()


def _notifier(path: Path) -> Notifier:
    from pydantic import TypeAdapter, ValidationError

    from controller.notifications import NotificationSink, Notifier

    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        sinks = TypeAdapter(list[NotificationSink]).validate_python(raw)
    except OSError as error:
        fail(f"--notifications {path}: {error.strerror}")
    except yaml.YAMLError as error:
        fail(f"--notifications {path}: not YAML: {error}")
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        fail(f"--notifications {path}: [{where}]: {first['msg']}")
    return Notifier(sinks)


@crd_app.command("generate")
def crd_generate(
    output: Annotated[
        Path | None,
        typer.Option(
            "--output-dir",
            "-d",
            help="Write one file per CRD here (e.g. manifests/crd) instead of stdout.",
        ),
    ] = None,
) -> None:
    """Print (or write) the CRDs generated from the operator's models."""
    from controller.kube.crd import CRDS, render_crd

    if output is None:
        typer.echo("---\n".join(render_crd(name) for name in CRDS), nl=False)
        return
    output.mkdir(parents=True, exist_ok=True)
    for name in CRDS:
        (output / name).write_text(render_crd(name), encoding="utf-8")
        typer.echo(f"wrote {output / name}")


def run() -> None:
    """Console-script entry point."""
    try:
        app()
    except BrokenPipeError:
        sys.exit(0)
