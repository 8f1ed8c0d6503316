"""`stagectl baseline export`: a rollout's baselines as a document another rollout carries.

The document goes into the other rollout's `spec.baselines.document` (or that
rollout names this one in `spec.baselines.from`); the operator checks it there.
"""

from __future__ import annotations

from typing import Annotated

import typer

from controller.cli.rollout_commands import (
    ContextOption,
    KubeconfigOption,
    NamespaceOption,
    Output,
    _api,
    _namespace,
    _print,
    _run,
)

baseline_app = typer.Typer(
    help="Baselines of a rollout: export them for another rollout.", no_args_is_help=True
)


@baseline_app.command("export")
def export(
    name: Annotated[str, typer.Argument(help="The rollout whose baselines to export.")],
    namespace: NamespaceOption = None,
    output: Annotated[Output, typer.Option("--output", "-o", help="yaml or json")] = Output.yaml,
    kubeconfig: KubeconfigOption = None,
    context: ContextOption = None,
) -> None:
    """Print the rollout's baselines (value, environment, window, query, plan) as a document."""
    import yaml

    from controller.clock import SystemClock
    from controller.kube.records import baseline_export

    api = _api(kubeconfig, context)
    where = _namespace(namespace, kubeconfig, context)
    document = _run(lambda: baseline_export(api, where, name, SystemClock().now()))
    _print(document, Output.json if output is Output.json else Output.yaml, yaml.safe_dump)


def register(app: typer.Typer) -> None:
    """Add `stagectl baseline` to the CLI."""
    app.add_typer(baseline_app, name="baseline")
