"""The quickstart: a whole rollout on your machine in a few minutes, without a cluster.

It starts, all on loopback:

- the API-server emulator of the tests (`tests/support/kube_emulator`), with the
  operator's CRDs, a namespace `demo`, a Deployment `api` and its flags ConfigMap;
- the reference app (`examples/reference_app`) under steady load, standing for the
  Deployment's pods: a small loop copies the ConfigMap's flags into it once the
  Deployment has rolled out, as a restart of real pods would;
- Debian's Prometheus, scraping the app every second;
- the real operator process, `stagectl run`, against the emulator and Prometheus;
- a StageRollout `demo` of `examples/quickstart/plan.yaml` (minute-long steps).

Then it prints the commands to watch, approve and break the rollout, and an Enter
key press injects an error spike (30 % of requests fail) so that you see a rollback.
With `--auto` it does all of that itself, prints the status and the history, and
exits: `--auto --short` (ten-second steps) is what the test runs.

    python -m examples.quickstart.run            # then follow what it prints
    python -m examples.quickstart.run --auto     # the same tour, unattended
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from controller.clock import SystemClock

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
STAGECTL = [sys.executable, "-c", "from controller.cli.main import run; run()"]
NAMESPACE, ROLLOUT = "demo", "demo"
OPERATOR_USER = "system:serviceaccount:stage-rollout-system:stage-rollout-operator"
YOU = "you@example.com"
CLOCK = SystemClock()


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    work = Path(tempfile.mkdtemp(prefix="stage-quickstart-"))
    with contextlib.ExitStack() as stack:
        world = _start_world(stack, work, short=args.short)
        say(
            f"operator, emulator ({world.kube_url}), reference app ({world.app_url}) and Prometheus ({world.prometheus_url}) are up"
        )
        say(f"the kubeconfig is {world.kubeconfig}; its context's namespace is {NAMESPACE}")
        if args.auto:
            return _tour(world, short=args.short)
        _explain(world)
        _wait_for_enter_then_spike(world)
    return 0


class World:
    """Everything the quickstart started, and how to reach it."""

    def __init__(self, kubeconfig: Path, kube_url: str, app: Any, prometheus_url: str) -> None:
        self.kubeconfig = kubeconfig
        self.kube_url = kube_url
        self.app = app
        self.app_url = app.url
        self.prometheus_url = prometheus_url

    def stagectl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run stagectl as you would, with this kubeconfig; its output is shown."""
        say("$ stagectl " + " ".join(args))
        done = subprocess.run(
            [*STAGECTL, *args, "--kubeconfig", str(self.kubeconfig)],
            capture_output=True,
            text=True,
            check=False,
        )
        sys.stdout.write(done.stdout)
        sys.stderr.write(done.stderr)
        if check and done.returncode != 0:
            raise SystemExit(
                f"quickstart: stagectl {args[0]} failed with exit status {done.returncode}"
            )
        return done

    def spike(self) -> None:
        say("injecting an error spike: 30 % of the app's requests now fail")
        self.app.update_faults(internal_error_fraction=0.3)


def _start_world(stack: contextlib.ExitStack, work: Path, *, short: bool) -> World:
    from examples.reference_app.load import LoadGenerator
    from examples.reference_app.server import ReferenceApp
    from examples.reference_app.validation import AppConfig
    from tests.kube.operator_world import install_admission_policies
    from tests.support.kube_emulator import KubeEmulator
    from tests.support.prometheus import PrometheusBinaries, PrometheusServer, free_port

    kube = stack.enter_context(KubeEmulator(rollout_delay=0.5 if short else 5.0))
    kube.add_token("operator-token", OPERATOR_USER)
    kube.add_token("you-token", YOU, groups=("sre",))
    for crd in sorted((REPO / "manifests" / "crd").glob("*.yaml")):
        kube.register_crd(yaml.safe_load(crd.read_text(encoding="utf-8")))
    # Without the admission policies the operator trusts no approval (see the README).
    install_admission_policies(kube)
    app = ReferenceApp(AppConfig(mode="off"), seed=7).start()
    stack.callback(app.stop)
    prometheus = PrometheusServer(
        work / "prometheus",
        binaries=PrometheusBinaries.locate(),
        scrape_targets={"stage-app": [f"127.0.0.1:{app.port}"]},
    )
    stack.callback(prometheus.close)
    prometheus.start()
    load = LoadGenerator(app.url, rate=40, invalid_fraction=0.01, duration=4 * 3600, seed=8)
    load.start()
    stack.callback(load.stop)
    kubeconfig = _write_kubeconfig(work / "kubeconfig", kube.url)
    api = _api(kubeconfig, "operator")
    _create_target(api)
    _sync_flags_into_app(stack, api, app)
    operator = subprocess.Popen(
        [
            *STAGECTL,
            "run",
            "--kubeconfig",
            str(kubeconfig),
            "--context",
            "operator",
            "--prometheus-url",
            prometheus.url,
            "--interval",
            "1s" if short else "5s",
            "--metrics-port",
            str(free_port()),
            "--log-level",
            "warning",
        ],
        stdout=(work / "operator.log").open("w"),
        stderr=subprocess.STDOUT,
    )
    stack.callback(_stop, operator)
    _create_rollout(api, short=short)
    return World(kubeconfig, kube.url, app, prometheus.url)


def _write_kubeconfig(path: Path, server: str) -> Path:
    def context(name: str, user: str) -> dict[str, Any]:
        return {
            "name": name,
            "context": {"cluster": "emulator", "user": user, "namespace": NAMESPACE},
        }

    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "emulator", "cluster": {"server": server}}],
        "users": [
            {"name": "you", "user": {"token": "you-token"}},
            {"name": "operator", "user": {"token": "operator-token"}},
        ],
        "contexts": [context("quickstart", "you"), context("operator", "operator")],
        "current-context": "quickstart",
    }
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def _api(kubeconfig: Path, context: str) -> Any:
    from controller.kube.api import KubeApi, load_api_client

    return KubeApi(load_api_client(str(kubeconfig), context))


def _create_target(api: Any) -> None:
    from controller.kube.api import CONFIGMAPS, DEPLOYMENTS

    labels = {"app": "api"}
    api.create(
        CONFIGMAPS,
        NAMESPACE,
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "flags"}, "data": {}},
    )
    api.create(
        DEPLOYMENTS,
        NAMESPACE,
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "api"},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "api", "image": "registry.k8s.io/pause:3.9"}]},
                },
            },
        },
    )


def _sync_flags_into_app(stack: contextlib.ExitStack, api: Any, app: Any) -> None:
    """Stand in for the pods: once the Deployment has rolled out, the app runs the ConfigMap's flags."""
    from controller.kube.api import CONFIGMAPS, DEPLOYMENTS
    from examples.reference_app.validation import AppConfig, ConfigError

    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(0.5):
            deployment = api.get(DEPLOYMENTS, NAMESPACE, "api") or {}
            status = deployment.get("status") or {}
            if status.get("updatedReplicas") != deployment.get("spec", {}).get("replicas"):
                continue
            data = (api.get(CONFIGMAPS, NAMESPACE, "flags") or {}).get("data") or {}
            if data:
                with contextlib.suppress(ConfigError):
                    app.set_config(AppConfig.from_env(data))

    thread = threading.Thread(target=loop, name="quickstart-pods", daemon=True)
    thread.start()
    stack.callback(stop.set)


def _create_rollout(api: Any, *, short: bool) -> None:
    from controller.kube.api import ROLLOUTS

    api.create(
        ROLLOUTS,
        NAMESPACE,
        {
            "apiVersion": ROLLOUTS.api_version,
            "kind": ROLLOUTS.name,
            "metadata": {"name": ROLLOUT},
            "spec": {
                "plan": {"inline": quickstart_plan(short=short)},
                "serviceAccountName": "stage-rollout",
                "target": {"configMap": "flags", "deployments": ["api"]},
            },
        },
    )


def quickstart_plan(*, short: bool) -> dict[str, Any]:
    """plan.yaml; with `short`, its soaks, windows and rates last seconds, not a minute."""
    plan: dict[str, Any] = yaml.safe_load((HERE / "plan.yaml").read_text(encoding="utf-8"))
    if short:
        signal = plan["signals"]["error_ratio"]
        signal["query"] = signal["query"].replace("[30s]", "[10s]")
        for phase in plan["phases"]:
            phase["min_duration"] = "10s"
            for gate in phase["gates"]:
                gate["window"] = "10s"
            for trigger in phase["triggers"]:
                trigger["for"] = "10s"
    return plan


def _tour(world: World, *, short: bool) -> int:
    """Walk the rollout as a person would: watch, approve, break it, read what happened."""
    patience = 120.0 if short else 600.0
    _until(
        world,
        lambda s: s.get("state") == "awaiting_approval",
        "shadow to soak and wait for you",
        patience,
    )
    world.stagectl("status", ROLLOUT)
    world.stagectl("approve", ROLLOUT, "--reason", "quickstart: shadow mode looks clean")
    _until(
        world,
        lambda s: s.get("step") == "enforce@50" and s.get("state") == "soaking",
        "enforce@50 in effect",
        patience,
    )
    world.spike()
    _until(world, lambda s: int(s.get("rollbacks", 0)) >= 1, "the rollback", patience)
    world.stagectl("status", ROLLOUT)
    world.stagectl("history", ROLLOUT)
    say("done: the spike rolled enforce@50 back to shadow, which now waits for a new approval")
    return 0


def _until(
    world: World, reached: Callable[[dict[str, Any]], bool], what: str, timeout: float
) -> None:
    from controller.kube.api import ROLLOUTS

    api = _api(world.kubeconfig, "quickstart")
    deadline = CLOCK.monotonic() + timeout
    say(f"waiting for {what}")
    while True:
        status = (api.get(ROLLOUTS, NAMESPACE, ROLLOUT) or {}).get("status") or {}
        if reached(status):
            return
        if CLOCK.monotonic() > deadline:
            raise SystemExit(
                f"quickstart: no {what} after {timeout:.0f}s; status: {status.get('state')} {status.get('blockers')}"
            )
        CLOCK.sleep(1.0)


def _explain(world: World) -> None:
    kubeconfig = f"--kubeconfig {world.kubeconfig}"
    say(
        "\nIn another terminal, in this repository:\n"
        f"  .venv/bin/stagectl status {ROLLOUT} --watch {kubeconfig}\n"
        f"  .venv/bin/stagectl approve {ROLLOUT} --reason 'shadow mode looks clean' {kubeconfig}   # once it awaits approval\n"
        f"  .venv/bin/stagectl history {ROLLOUT} {kubeconfig}\n"
        "Press Enter here to inject an error spike (enforce@50 rolls back); Ctrl-C stops everything."
    )


def _wait_for_enter_then_spike(world: World) -> None:
    with contextlib.suppress(KeyboardInterrupt, EOFError):
        input()
        world.spike()
        say("watch the rollback with `stagectl status`; Ctrl-C stops everything")
        threading.Event().wait()


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()


def say(text: str) -> None:
    print(text, flush=True)


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m examples.quickstart.run", description=(__doc__ or "").splitlines()[0]
    )
    parser.add_argument(
        "--auto",
        action="store_true",
        help="approve, inject the spike and print the history by itself, then exit",
    )
    parser.add_argument(
        "--short", action="store_true", help="ten-second steps instead of one-minute ones"
    )
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(main())
