"""`stagectl`: plans, simulations and (later) the operator, from one command.

Each command declares its options and hands off to a library function; bad
input of any kind ends with exit status 2 and one message saying what is wrong.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from datetime import datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

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
from controller.cli import baseline_commands, rollout_commands
from controller.cli.arguments import (
    checked_moment,
    duration_option,
    readable_file,
    tick_count,
    writable_directory,
    writable_file,
)
from controller.cli.errors import fail

if TYPE_CHECKING:
    from controller.driving import RunResult
    from controller.notifications import Notifier
    from controller.prometheus.source import PrometheusSettings, PrometheusSource
    from controller.sim.scenario import Scenario
    from phases.plan import Plan

app = typer.Typer(
    name="stagectl",
    help="Progressive delivery of risky feature flags: plans, simulations and the rollout operator.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    # Plain click help: rich's help renderer alone takes longer to import (about
    # 170 ms) than `stagectl --help` may take in all.
    rich_markup_mode=None,
)


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"stagectl {version('stage-rollout-controller')}")
        except PackageNotFoundError:
            typer.echo("stagectl (not installed: no version)")
        raise typer.Exit(0)


@app.callback()
def _root(
    _version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Progressive delivery of risky feature flags: plans, simulations and the rollout operator."""


plan_app = typer.Typer(help="Show, validate and draw rollout plans.", no_args_is_help=True)
app.add_typer(plan_app, name="plan")
rollout_commands.register(app)
baseline_commands.register(app)
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
        import yaml

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
        empty = [] if problems else _signals_without_data(plan, source, now)
    finally:
        source.close()
    text, source_name = read_plan(reference)
    error = locate(text, source_name, "plan", problems)
    if error is not None:
        fail(str(error))
    for name in empty:
        typer.echo(
            f"stagectl: warning: signal {name} returns no data at {url} now: "
            "its gates stay unknown (nothing promotes) and its triggers cannot fire",
            err=True,
        )
    accepted = f"; Prometheus at {url} accepts all {len(plan.signals)} signal queries"
    if empty:
        return f"{accepted}, {len(empty)} of them return no data now ({', '.join(empty)})"
    return accepted


def _signals_without_data(plan: Plan, source: PrometheusSource, now: datetime) -> list[str]:
    """Signals whose query has no sample over the last evaluation step: a typo or a missing exporter."""
    window = plan.evaluation.resolution
    return [
        name
        for name, signal in plan.signals.items()
        if source.summarize(name, signal.query, window, now).count == 0
    ]


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
        str | None,
        typer.Option(
            "--plan",
            "-p",
            help="Plan file or bundled plan name (default: the plan the scenario names, "
            f"else {DEFAULT_PLAN}).",
        ),
    ] = None,
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
    if plot is not None:
        writable_file("--plot", plot)
    try:
        named = None if plan is not None else load_scenario(scenario).plan
        loaded = _plan(plan or named or DEFAULT_PLAN)
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
        import json

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
        import json

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
        moment = SystemClock().now() + (offset if rest.startswith("+") else -offset)
        return checked_moment(option, text, moment)
    try:
        moment = datetime.fromisoformat(cleaned.replace("Z", "+00:00"))
    except ValueError:
        fail(
            f"{option} {text!r} is not a time: use ISO 8601 with an offset (2026-11-20T00:00:00Z) or now-3d"
        )
    if moment.tzinfo is None:
        fail(f"{option} {text!r} has no time zone: add Z or an offset such as +01:00")
    return checked_moment(option, text, moment)


def _prometheus_settings(
    url: str, timeout: str, bearer_token_file: Path | None, ca_file: Path | None, insecure: bool
) -> PrometheusSettings:
    from pydantic import ValidationError

    from controller.prometheus.source import PrometheusSettings

    duration_option("--query-timeout", timeout, at_most=timedelta(minutes=10))
    if bearer_token_file is not None:
        readable_file("--bearer-token-file", bearer_token_file)
    if ca_file is not None:
        readable_file("--ca-file", ca_file, limit=1024 * 1024)
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


PrometheusUrls = Annotated[
    list[str],
    typer.Option(
        "--prometheus",
        help="Prometheus base URL (every environment), or ENV=URL for one plan environment "
        "(e.g. --prometheus staging=http://a:9090 --prometheus production=http://b:9090).",
        envvar="STAGECTL_PROMETHEUS_URL",
    ),
]


def _environment_urls(values: list[str], plan: Plan) -> tuple[str | None, dict[str, str]]:
    """The URL for every environment (if given) and per environment, checked against the plan."""
    import re

    shared: str | None = None
    named: dict[str, str] = {}
    for value in values:
        match = re.fullmatch(r"([a-z0-9][a-z0-9_-]*)=(.+)", value)
        if match is None:
            if shared is not None:
                fail(f"--prometheus {value}: a URL for every environment is already given")
            shared = value
            continue
        name, url = match.groups()
        if name not in plan.environments:
            fail(
                f"--prometheus {name}=...: plan {plan.name} has no environment {name} "
                f"(its environments: {', '.join(plan.environments)})"
            )
        named[name] = url
    missing = [e for e in plan.environments if e not in named]
    if shared is None and missing:
        fail(
            f"--prometheus: no URL for environment {missing[0]} (give {missing[0]}=URL, or one URL)"
        )
    return shared, named


@app.command("replay")
def replay_command(
    prometheus: PrometheusUrls,
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
    from phases.durations import format_duration

    loaded = _plan(plan)
    begin, finish = _moment("--start", start), _moment("--end", end)
    if finish <= begin:
        fail(f"--end {finish.isoformat()} is not after --start {begin.isoformat()}")
    step = duration_option("--tick", tick)
    tick_count("--tick", begin, finish, step)
    shared, named = _environment_urls(prometheus, loaded)
    sources: dict[str, PrometheusSource] = {}
    for url in dict.fromkeys([*([shared] if shared else []), *named.values()]):
        settings = _prometheus_settings(
            url, query_timeout, bearer_token_file, ca_file, insecure_skip_verify
        )
        sources[url] = PrometheusSource(settings, loaded.evaluation.resolution)
        unreachable = sources[url].check_query("vector(1)", finish)
        if unreachable is not None:
            for opened in sources.values():
                opened.close()
            fail(f"--prometheus {url}: {unreachable}")
    from controller.cli.progress import replay_progress

    try:
        with replay_progress(begin, finish) as on_tick:
            result = replay(
                loaded,
                sources[shared or named[loaded.environments[0]]],
                start=begin,
                end=finish,
                tick=step,
                approvals=approvals.value,
                on_tick=on_tick,
                by_environment={name: sources[url] for name, url in named.items()},
            )
    finally:
        for opened in sources.values():
            opened.close()
    extra = {
        "prometheus": shared if not named else {**({"*": shared} if shared else {}), **named},
        "end": finish.isoformat(),
        "queries_sent": sum(s.queries_sent for s in sources.values()),
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
        str,
        typer.Option(
            "--log-level",
            help="debug, info, warning or error; only debug shows the libraries' own lines.",
        ),
    ] = "info",
    notifications: Annotated[
        Path | None,
        typer.Option(
            "--notifications",
            help="YAML list of webhook sinks (url, kind json|slack, timeout, headers).",
        ),
    ] = None,
    default_service_account: Annotated[
        str | None,
        typer.Option(
            "--default-service-account",
            help="ServiceAccount (in each rollout's own namespace) to act as for rollouts without spec.serviceAccountName; without it such rollouts are refused.",
        ),
    ] = None,
    prometheus_endpoints: Annotated[
        Path | None,
        typer.Option(
            "--prometheus-endpoints",
            help="YAML mapping of endpoint names to {url, timeout, caFile, bearerTokenFile, basicAuthUser, basicAuthPasswordFile}; rollouts choose one with spec.prometheus.endpoint.",
        ),
    ] = None,
    wakeup_margin: Annotated[
        str,
        typer.Option(
            "--wakeup-margin",
            help="Tick a rollout this long after the moment its decision can change (about the "
            "Prometheus scrape interval); 0s turns those wake-ups off.",
        ),
    ] = "5s",
    alertmanager_webhook_port: Annotated[
        int | None,
        typer.Option(
            "--alertmanager-webhook-port",
            help="Serve an Alertmanager webhook receiver (POST /alertmanager) on this port: a "
            "firing alert ticks the rollouts whose plan names it at once.",
        ),
    ] = None,
    alertmanager_webhook_token_file: Annotated[
        Path | None,
        typer.Option(
            "--alertmanager-webhook-token-file",
            help="File holding the bearer token the webhook receiver requires.",
        ),
    ] = None,
    unsafe_trust_records: Annotated[
        bool,
        typer.Option(
            "--unsafe-trust-records-without-policy",
            help="UNSAFE: count approvals and commands even when the admission policies of "
            "manifests/base/approval-policy.yaml are missing or changed, so that anyone who "
            "may create a record can sign as anyone. Only for clusters that cannot run them.",
        ),
    ] = False,
) -> None:
    """Run the operator: reconcile every StageRollout it can see until stopped."""
    import re
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
    margin, webhook_token = _wakeup_options(
        wakeup_margin, alertmanager_webhook_port, alertmanager_webhook_token_file, metrics_port
    )
    if prometheus_url is not None:
        _prometheus_settings(prometheus_url, "10s", None, None, False)
    endpoints = _endpoints(prometheus_endpoints) if prometheus_endpoints is not None else {}
    if default_service_account is not None and not re.fullmatch(
        r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*", default_service_account
    ):
        fail(f"--default-service-account {default_service_account!r} is not a ServiceAccount name")
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
        default_service_account=default_service_account,
        prometheus_endpoints=endpoints,
        unsafe_trust_records=unsafe_trust_records,
        wakeups=margin > timedelta(0),
        wakeup_margin=margin,
        alert_webhook_port=alertmanager_webhook_port,
        alert_webhook_token=webhook_token,
    )
    operator = Operator(api, settings, notifier=notifier)
    signal.signal(signal.SIGTERM, lambda *_: operator.stop.set())
    signal.signal(signal.SIGINT, lambda *_: operator.stop.set())
    operator.run()


def _wakeup_options(
    margin_text: str, port: int | None, token_file: Path | None, metrics_port: int
) -> tuple[timedelta, str | None]:
    """The wake-up margin and the webhook token, or exit 2 naming the bad option."""
    from controller.alert_receiver import read_token
    from phases.durations import parse_duration

    try:
        margin = parse_duration(margin_text)
    except ValueError as error:
        fail(f"--wakeup-margin {margin_text!r}: {error}")
    if margin > timedelta(minutes=10):
        fail("--wakeup-margin must be at most 10m")
    if port is not None and not 0 < port < 65536:
        fail(f"--alertmanager-webhook-port {port} is not a port number")
    if port is not None and port == metrics_port:
        fail("--alertmanager-webhook-port must differ from --metrics-port")
    if token_file is not None and port is None:
        fail("--alertmanager-webhook-token-file needs --alertmanager-webhook-port")
    token = None
    if token_file is not None:
        try:
            token = read_token(token_file)
        except ValueError as error:
            fail(f"--alertmanager-webhook-token-file: {error}")
    return margin, token


def _endpoints(path: Path) -> dict[str, PrometheusSettings]:
    from controller.kube.prometheus_refs import load_endpoints

    try:
        return load_endpoints(path)
    except ValueError as error:
        fail(f"--prometheus-endpoints {error}")


def _notifier(path: Path) -> Notifier:
    from pydantic import TypeAdapter, ValidationError

    from controller.notifications import NotificationSink, Notifier
    from phases.documents import DocumentError, compose

    text = readable_file("--notifications", path)
    try:
        _root, raw = compose(text, f"--notifications {path}", "list of sinks")
        sinks = TypeAdapter(list[NotificationSink]).validate_python(raw)
    except DocumentError as error:
        fail(str(error))
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        fail(f"--notifications {path}: [{where}]: {first['msg'][:200]}")
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
    writable_directory("--output-dir", output)
    for name in CRDS:
        try:
            (output / name).write_text(render_crd(name), encoding="utf-8")
        except OSError as error:
            fail(f"--output-dir {output}: {name} cannot be written: {error.strerror or error}")
        typer.echo(f"wrote {output / name}")


dashboard_app = typer.Typer(
    help="The Grafana dashboard of the runbook and the operator.", no_args_is_help=True
)
app.add_typer(dashboard_app, name="dashboard")


@dashboard_app.command("generate")
def dashboard_generate(
    output: Annotated[
        Path | None,
        typer.Option(
            "--output-dir",
            "-d",
            help="Write the JSON here (e.g. manifests/grafana) instead of stdout.",
        ),
    ] = None,
    plan: Annotated[
        str, typer.Option("--plan", "-p", help="Plan whose signals and thresholds it shows.")
    ] = DEFAULT_PLAN,
) -> None:
    """Print (or write) the Grafana dashboard generated from the plan's signals and gates."""
    from controller.dashboard import FILE_NAME, dashboard_json

    document = dashboard_json(_plan(plan))
    if output is None:
        typer.echo(document, nl=False)
        return
    output.mkdir(parents=True, exist_ok=True)
    (output / FILE_NAME).write_text(document, encoding="utf-8")
    typer.echo(f"wrote {output / FILE_NAME}")


def run() -> None:
    """Console-script entry point."""
    try:
        app()
    except BrokenPipeError:
        sys.exit(0)
