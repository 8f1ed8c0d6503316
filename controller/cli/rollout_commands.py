"""`stagectl status`, `history`, `approve` and the commands people give a rollout.

Each command only parses its options and hands off to `controller.kube.records`; every
problem (unknown rollout, wrong step, no permission, no cluster) ends with exit
status 2 and one sentence.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any

import typer

from controller.cli.errors import fail
from controller.cli.waiting import WaitGoal, parse_goal, wait_until

KubeconfigOption = Annotated[
    str | None,
    typer.Option(
        "--kubeconfig", help="Kubeconfig file; in-cluster config when absent.", envvar="KUBECONFIG"
    ),
]
ContextOption = Annotated[str | None, typer.Option("--context", help="Kubeconfig context.")]
NamespaceOption = Annotated[
    str | None,
    typer.Option(
        "--namespace",
        "-n",
        help="The rollout's namespace; the kubeconfig context's namespace when absent, as kubectl.",
    ),
]
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


def _namespace(namespace: str | None, kubeconfig: str | None, context: str | None) -> str:
    """`-n` when given, else the namespace of the kubeconfig context, as kubectl chooses it."""
    from controller.kube.api import context_namespace

    return namespace or context_namespace(kubeconfig, context)


def _colours() -> bool:
    """Colours on a terminal only, and never when NO_COLOR is set (no-color.org)."""
    import os
    import sys

    return sys.stdout.isatty() and not os.environ.get("NO_COLOR")


def _run(action: Callable[[], Any]) -> Any:
    from controller.kube.api import KubeError
    from controller.kube.records import RecordError

    try:
        return action()
    except (RecordError, KubeError) as error:
        fail(str(error))


def _print(document: Any, output: Output, table: Callable[[Any], str]) -> None:
    if output is Output.json:
        import json

        typer.echo(json.dumps(document, indent=2, default=str))
    elif output is Output.yaml:
        import yaml

        typer.echo(yaml.safe_dump(document, sort_keys=False, allow_unicode=True), nl=False)
    else:
        typer.echo(table(document))


def _status_table(
    views: list[dict[str, Any]], now: datetime, *, colours: bool = False, namespaces: bool = False
) -> str:
    from controller.rendering import (
        age,
        baseline_line,
        blocker_lines,
        gate_lines,
        paint,
        state_colour,
        table,
        where,
    )

    headers = ["NAME", "STEP", "STATE", "PERCENT", "IN STEP", "BLOCKED BY"]
    rows = [
        [
            v["name"],
            v.get("step", "-") + where(v.get("environment")),
            v["state"],
            str(v.get("percent", "-")),
            v.get("timeInStep", "-"),
            (v.get("blockers") or ["-"])[0],
        ]
        for v in views
    ]
    if namespaces:
        headers = ["NAMESPACE", *headers]
        rows = [[v["namespace"], *row] for v, row in zip(views, rows, strict=True)]
    text = table(headers, rows)
    if colours:
        for view in views:
            state = view["state"]
            text = text.replace(
                f"  {state}  ", f"  {paint(state, state_colour(state), enabled=True)}  "
            )
    out = [text]
    if len(views) != 1:
        return "\n".join(out)
    view = views[0]
    if view.get("lastTickAt"):
        # The operator writes the status only when a decision, condition or verdict changes,
        # so an old write is a steady rollout, not a stopped operator (its liveness is the
        # stage_rollout_last_tick_timestamp_seconds metric).
        out.append(f"  as of the operator's last status change, {age(view['lastTickAt'], now)}:")
    verdicts, spoken_for = gate_lines(view, now)
    for blocker in blocker_lines(view, spoken_for):
        out.append(paint(f"  blocked: {blocker}", "yellow", enabled=colours))
    out += [f"  {line}" for line in verdicts]
    for rejected in view.get("commandsRejected", []):
        out.append(
            paint(
                f"  rejected {age(rejected['at'], now)}: {rejected['message']}",
                "red",
                enabled=colours,
            )
        )
    out += [f"  {baseline_line(record)}" for record in view.get("baselines", [])]
    for transition in view.get("transitions", []):
        out.append(
            f"  {age(transition['at'], now):>9}  {transition['fromStep']} ({transition['fromState']}) → "
            f"{transition['toStep']} ({transition['toState']}){where(transition.get('environment'))}"
            f"  {transition['trigger']}: {transition['reason']}"
        )
    return "\n".join(out)


def _history_lines(doc: dict[str, Any], now: datetime) -> str:
    from controller.rendering import age, baseline_line, where

    dated: list[tuple[str, str]] = [
        (
            t["at"],
            f"{t['fromStep']} → {t['toStep']}{where(t.get('environment'))}  "
            f"{t['trigger']}: {t['reason']}",
        )
        for t in doc["transitions"]
    ]
    dated += [
        (a["at"], f"approval of {a['step']} by {a['approver']}: {a['reason']}")
        for a in doc["approvals"]
    ]
    dated += [
        (c["at"], f"{c['command']} by {c['by']}: {c.get('reason', '')}".rstrip(": "))
        for c in doc["commands"]
    ]
    dated += [(r["at"], f"rejected: {r['message']}") for r in doc.get("commandsRejected", [])]
    dated += [(b.get("capturedAt") or "", baseline_line(b)) for b in doc.get("baselines", [])]
    dated.sort(key=lambda item: _parse_time(item[0]))
    return "\n".join(f"{age(at, now):>9}  {line}" for at, line in dated) or "nothing recorded yet"


def _parse_time(text: str | None) -> datetime:
    if not text:
        return datetime.min.replace(tzinfo=UTC)
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def register(app: typer.Typer) -> None:
    """Add the people-facing commands to `stagectl`."""

    @app.command("status")
    def status(
        name: Annotated[
            str | None, typer.Argument(help="A rollout; all rollouts of the namespace when absent.")
        ] = None,
        namespace: NamespaceOption = None,
        all_namespaces: Annotated[
            bool, typer.Option("--all-namespaces", "-A", help="Rollouts of every namespace.")
        ] = False,
        watch: Annotated[
            bool, typer.Option("--watch", "-w", help="Redraw every 2 seconds until interrupted.")
        ] = False,
        wait_for: Annotated[
            str | None,
            typer.Option(
                "--wait-for",
                help="Wait until step=STEP (that step or a later one) or completed; exit 0 when "
                "reached, 1 on a rollback, stall or abort, 3 on --timeout.",
            ),
        ] = None,
        timeout: Annotated[
            str, typer.Option("--timeout", help="How long --wait-for waits (e.g. 30m, 2h).")
        ] = "1h",
        poll: Annotated[
            str, typer.Option("--poll", help="Time between two reads while waiting.")
        ] = "10s",
        output: OutputOption = Output.table,
        kubeconfig: KubeconfigOption = None,
        context: ContextOption = None,
    ) -> None:
        """Where each rollout is, and exactly what blocks its promotion now."""
        from controller.clock import SystemClock
        from controller.kube.api import ROLLOUTS
        from controller.kube.records import describe, plan_of, rollout_of

        if all_namespaces and (name is not None or namespace is not None):
            fail(
                "--all-namespaces lists every rollout; give neither a NAME nor --namespace with it"
            )
        if wait_for is not None:
            if name is None:
                fail("--wait-for needs the NAME of one rollout")
            goal = _wait_goal(wait_for)
            limits = _duration("--timeout", timeout), _duration("--poll", poll)
        api = _api(kubeconfig, context)
        where = None if all_namespaces else _namespace(namespace, kubeconfig, context)
        clock = SystemClock()
        if wait_for is not None:
            from phases.documents import DocumentError

            assert name is not None and where is not None
            try:
                code = wait_until(
                    lambda: _run(lambda: rollout_of(api, where, name)),
                    goal,
                    clock,
                    plan_of=lambda rollout: _run(lambda: plan_of(api, rollout)),
                    timeout=limits[0],
                    poll=limits[1],
                    say=typer.echo,
                )
            except (ValueError, DocumentError) as error:
                fail(f"--wait-for {wait_for!r}: {error}")
            raise typer.Exit(code)

        def views() -> list[dict[str, Any]]:
            if name is not None:
                assert where is not None
                return [describe(rollout_of(api, where, name), clock.now())]
            items, _ = api.list(ROLLOUTS, where)
            return [
                describe(item, clock.now())
                for item in sorted(
                    items, key=lambda i: (i["metadata"]["namespace"], i["metadata"]["name"])
                )
            ]

        colours = _colours()
        while True:
            found = _run(views)
            if watch and output is Output.table and colours:
                typer.echo("\033[H\033[2J", nl=False)
            _print(
                found if name is None else found[0],
                output,
                lambda doc: _status_table(
                    doc if isinstance(doc, list) else [doc],
                    clock.now(),
                    colours=colours,
                    namespaces=all_namespaces,
                ),
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
        namespace: NamespaceOption = None,
        output: OutputOption = Output.table,
        kubeconfig: KubeconfigOption = None,
        context: ContextOption = None,
    ) -> None:
        """Transitions, approvals with their approvers, commands with who gave them, rejections."""
        from controller.clock import SystemClock
        from controller.kube.records import history as read_history

        api = _api(kubeconfig, context)
        where = _namespace(namespace, kubeconfig, context)
        document = _run(lambda: read_history(api, where, name))
        _print(document, output, lambda doc: _history_lines(doc, SystemClock().now()))

    @app.command("approve")
    def approve(
        name: Annotated[str, typer.Argument(help="The rollout.")],
        reason: ReasonOption,
        step: Annotated[
            str | None, typer.Option("--step", help="The step you approve leaving (checked).")
        ] = None,
        namespace: NamespaceOption = None,
        kubeconfig: KubeconfigOption = None,
        context: ContextOption = None,
    ) -> None:
        """Approve promoting the rollout out of its current step, as yourself."""
        from controller.clock import SystemClock
        from controller.kube.records import approve as record_approval

        api = _api(kubeconfig, context)
        where = _namespace(namespace, kubeconfig, context)
        created = _run(
            lambda: record_approval(
                api, where, name, step=step, reason=reason, now=SystemClock().now()
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
            namespace: NamespaceOption = None,
            kubeconfig: KubeconfigOption = None,
            context: ContextOption = None,
        ) -> None:
            from controller.kube.records import command

            api = _api(kubeconfig, context)
            where = _namespace(namespace, kubeconfig, context)
            created = _run(lambda: command(api, where, name, kind, reason=reason))
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
                help="An earlier step, or warn (every flag at the plan's safe value: the runbook's "
                "mode warn, write enforcement off, percent 0).",
            ),
        ] = None,
        disable_write_enforcement: Annotated[
            bool,
            typer.Option(
                "--disable-write-enforcement",
                help="Keep the step, turn ENFORCE_WRITE_ONLY off (reads stay in warn).",
            ),
        ] = False,
        namespace: NamespaceOption = None,
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
        where = _namespace(namespace, kubeconfig, context)
        created = _run(lambda: command(api, where, name, "rollback", reason=reason, to=to))
        target = to or "the previous step"
        typer.echo(
            f"rollback of {name} to {target} recorded as {created['spec']['by']} ({created['metadata']['name']})"
        )


def _wait_goal(text: str) -> WaitGoal:
    try:
        return parse_goal(text)
    except ValueError as error:
        fail(f"--wait-for {text!r}: {error}")


def _duration(option: str, text: str) -> timedelta:
    from phases.durations import parse_duration

    try:
        value = parse_duration(text)
    except ValueError as error:
        fail(f"{option} {text!r}: {error}")
    if value <= timedelta(0):
        fail(f"{option} must be longer than 0s")
    return value
