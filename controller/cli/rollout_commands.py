"""`stagectl status`, `history`, `approve` and the commands people give a rollout.

Each command only parses its options and hands off to `controller.kube.records`; every
problem (unknown rollout, wrong step, no permission, no cluster) ends with exit
status 2 and one sentence.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from enum import StrEnum
from typing import Annotated, Any

import typer
import yaml

from controller.cli.errors import fail

KubeconfigOption = Annotated[
    str | None,
    typer.Option(
        "--kubeconfig", help="Kubeconfig file; in-cluster config when absent.", envvar="KUBECONFIG"
    ),
]
ContextOption = Annotated[str | None, typer.Option("--context", help="Kubeconfig context.")]
NamespaceOption = Annotated[str, typer.Option("--namespace", "-n", help="The rollout's namespace.")]
ReasonOption = Annotated[str, typer.Option("--reason", help="Why; recorded with your name.")]


class Output(StrEnum):
    table = "table"
    json = "json"
    yaml = "yaml"


OutputOption = Annotated[Output, typer.Option("--output", "-o", help="table, json or yaml")]


def _api(kubeconfig: str | None, context: str | None) -> Any:
    from controller.kube.api import KubeApi, KubeError, load_api_client

    try:
        return KubeApi(load_api_client(kubeconfig, context))
    except KubeError as error:
        fail(str(error))


def _run(action: Callable[[], Any]) -> Any:
    from controller.kube.api import KubeError
    from controller.kube.records import RecordError

    try:
        return action()
    except (RecordError, KubeError) as error:
        fail(str(error))


def _print(document: Any, output: Output, table: Callable[[Any], str]) -> None:
    if output is Output.json:
        typer.echo(json.dumps(document, indent=2, default=str))
    elif output is Output.yaml:
        typer.echo(yaml.safe_dump(document, sort_keys=False, allow_unicode=True), nl=False)
    else:
        typer.echo(table(document))


def _status_table(views: list[dict[str, Any]]) -> str:
    from controller.rendering import table

    rows = [
        [
            v["name"],
            v.get("step", "-"),
            v["state"],
            str(v.get("percent", "-")),
            v.get("timeInStep", "-"),
        ]
        for v in views
    ]
    out = [table(["NAME", "STEP", "STATE", "PERCENT", "IN STEP"], rows)]
    if len(views) == 1:
        view = views[0]
        for blocker in view.get("blockers", []):
            out.append(f"  blocked: {blocker}")
        for verdict in view.get("verdicts", []):
            value = "" if verdict.get("observed") is None else f" value {verdict['observed']:g}"
            limit = (
                "" if verdict.get("threshold") is None else f" threshold {verdict['threshold']:g}"
            )
            out.append(
                f"  {verdict['role']} {verdict['name']}: {verdict['outcome']}{value}{limit} ({verdict['reason']})"
            )
        for transition in view.get("transitions", []):
            out.append(
                f"  {transition['at']}  {transition['fromStep']} ({transition['fromState']}) → "
                f"{transition['toStep']} ({transition['toState']})  {transition['trigger']}: {transition['reason']}"
            )
    return "\n".join(out)


def register(app: typer.Typer) -> None:
    """Add the people-facing commands to `stagectl`."""

    @app.command("status")
    def status(
        name: Annotated[
            str | None, typer.Argument(help="A rollout; all rollouts of the namespace when absent.")
        ] = None,
        namespace: NamespaceOption = "default",
        watch: Annotated[
            bool, typer.Option("--watch", "-w", help="Redraw every 2 seconds until interrupted.")
        ] = False,
        output: OutputOption = Output.table,
        kubeconfig: KubeconfigOption = None,
        context: ContextOption = None,
    ) -> None:
        """Where each rollout is, and exactly what blocks its promotion now."""
        from controller.clock import SystemClock
        from controller.kube.api import ROLLOUTS
        from controller.kube.records import describe, rollout_of

        api = _api(kubeconfig, context)
        clock = SystemClock()

        def views() -> list[dict[str, Any]]:
            if name is not None:
                return [describe(rollout_of(api, namespace, name), clock.now())]
            items, _ = api.list(ROLLOUTS, namespace)
            return [
                describe(item, clock.now())
                for item in sorted(items, key=lambda i: i["metadata"]["name"])
            ]

        while True:
            found = _run(views)
            if watch and output is Output.table:
                typer.echo("\033[H\033[2J", nl=False)
            _print(
                found if name is None else found[0],
                output,
                lambda doc: _status_table(doc if isinstance(doc, list) else [doc]),
            )
            if not watch:
                return
            try:
                clock.sleep(2.0)
            except KeyboardInterrupt:
                return

    @app.command("history")
    def history(
        name: Annotated[str, typer.Argument(help="The rollout.")],
        namespace: NamespaceOption = "default",
        output: OutputOption = Output.table,
        kubeconfig: KubeconfigOption = None,
        context: ContextOption = None,
    ) -> None:
        """Transitions, approvals with their approvers, and commands with who gave them."""
        from controller.kube.records import history as read_history

        api = _api(kubeconfig, context)
        document = _run(lambda: read_history(api, namespace, name))

        def lines(doc: dict[str, Any]) -> str:
            out = [
                f"{t['at']}  {t['fromStep']} → {t['toStep']}  {t['trigger']}: {t['reason']}"
                for t in doc["transitions"]
            ]
            out += [
                f"{a['at']}  approval of {a['step']} by {a['approver']}: {a['reason']}"
                for a in doc["approvals"]
            ]
            out += [
                f"{c['at']}  {c['command']} by {c['by']}: {c.get('reason', '')}"
                for c in doc["commands"]
            ]
            return "\n".join(out) or "nothing recorded yet"

        _print(document, output, lines)

    @app.command("approve")
    def approve(
        name: Annotated[str, typer.Argument(help="The rollout.")],
        reason: ReasonOption,
        step: Annotated[
            str | None, typer.Option("--step", help="The step you approve leaving (checked).")
        ] = None,
        namespace: NamespaceOption = "default",
        kubeconfig: KubeconfigOption = None,
        context: ContextOption = None,
    ) -> None:
        """Approve promoting the rollout out of its current step, as yourself."""
        from controller.clock import SystemClock
        from controller.kube.records import approve as record_approval

        api = _api(kubeconfig, context)
        created = _run(
            lambda: record_approval(
                api, namespace, name, step=step, reason=reason, now=SystemClock().now()
            )
        )
        spec = created["spec"]
        typer.echo(
            f"approved leaving {spec['step']} of {name} as {spec['approver']} ({created['metadata']['name']})"
        )

    def make(kind: str, summary: str) -> None:
        def issue(
            name: Annotated[str, typer.Argument(help="The rollout.")],
            reason: ReasonOption = "",
            namespace: NamespaceOption = "default",
            kubeconfig: KubeconfigOption = None,
            context: ContextOption = None,
        ) -> None:
            from controller.kube.records import command

            api = _api(kubeconfig, context)
            created = _run(lambda: command(api, namespace, name, kind, reason=reason))
            typer.echo(
                f"{kind} of {name} recorded as {created['spec']['by']} ({created['metadata']['name']})"
            )

        issue.__doc__ = summary
        app.command(kind)(issue)

    make(
        "pause",
        "Pause the rollout: no promotion, soak clock stopped (rollback triggers stay armed).",
    )
    make("resume", "Resume a paused or stalled rollout.")
    make("retry", "Re-run the step's failed jobs with their resume arguments.")
    make("abort", "Stop managing the rollout; flags stay as they are.")

    @app.command("rollback")
    def rollback(
        name: Annotated[str, typer.Argument(help="The rollout.")],
        reason: ReasonOption = "",
        to: Annotated[
            str | None,
            typer.Option(
                "--to",
                help="An earlier step, or warn (mode warn, write enforcement off, percent 0).",
            ),
        ] = None,
        disable_write_enforcement: Annotated[
            bool,
            typer.Option(
                "--disable-write-enforcement",
                help="Keep the step, turn ENFORCE_WRITE_ONLY off (reads stay in warn).",
            ),
        ] = False,
        namespace: NamespaceOption = "default",
        kubeconfig: KubeconfigOption = None,
        context: ContextOption = None,
    ) -> None:
        """Roll back to the previous step, an earlier one, straight to warn, or write enforcement off."""
        from controller.kube.records import command
        from phases.decide import WRITE_ENFORCEMENT_OFF

        if disable_write_enforcement and to is not None:
            fail("--to and --disable-write-enforcement are two different rollbacks; give one")
        if disable_write_enforcement:
            to = WRITE_ENFORCEMENT_OFF
        api = _api(kubeconfig, context)
        created = _run(lambda: command(api, namespace, name, "rollback", reason=reason, to=to))
        target = to or "the previous step"
        typer.echo(
            f"rollback of {name} to {target} recorded as {created['spec']['by']} ({created['metadata']['name']})"
        )
