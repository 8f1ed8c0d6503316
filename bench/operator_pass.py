"""Benchmark: one replica reconciles 1,000 (or 10,000) StageRollouts from its caches.

The API server is the emulator, in a child process (so that the CPU and memory
printed are the operator's own) which counts every request it serves; Prometheus
is Debian's, on loopback, with a few hours of backfilled history. Each rollout has
its own ConfigMap and Deployment in one of ten namespaces. The operator starts its
list-and-watch caches, then passes bring every rollout into effect and into its
soak; the last passes are the steady state (nothing changes, so nothing should be
read from or written to the API server; gates and triggers are still read from
Prometheus, every distinct query once for all rollouts).

The operator's scheduler runs (wake-up jobs), as in `Operator.run`; the passes are
called by the bench, each followed by the heap keeper's freeze, as in `Operator.run`
(OPERATOR_PASS_FREEZE=0: without it). For each pass it prints wall time, CPU per rollout, API calls
per rollout by verb and resource (counted by the emulator; the caches' watches
resuming are counted apart), Prometheus queries, the collector's time by generation,
and RSS. Each scenario
runs in a fresh process: N rollouts with no old approvals, and N rollouts with 10
old approvals each (for another plan version, created before the rollout started);
the ratio of their best steady passes is printed last.

    python bench/operator_pass.py                    # 1,000 rollouts, 0 and 10 old approvals
    python bench/operator_pass.py --rollouts 10000   # 10,000 (20-30 minutes on a busy machine)
    python bench/operator_pass.py --one --rollouts 10000 --with-old 0   # only the first scenario

OPERATOR_PASS_PROFILE=1 profiles the last pass (ticks run inline),
OPERATOR_PASS_TRACEMALLOC=N prints the largest allocations after the passes (N frames
each) and tracemalloc's total beside RSS, and OPERATOR_PASS_MALLOCSTATS=1 prints
pymalloc's arenas against the blocks in use (what RSS holds beyond live objects).

Targets: a steady pass over 10,000 rollouts <= 5 s with zero API reads and zero
writes, RSS <= 400 MB, and 10 old approvals per rollout within 10 % of none.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from controller.clock import SystemClock  # noqa: E402
from controller.heap import collect_whole  # noqa: E402
from controller.kube.api import APPROVALS, DEPLOYMENTS, ROLLOUTS, Kind, KubeApi  # noqa: E402
from controller.operator import Operator, OperatorSettings  # noqa: E402
from tests.kube.operator_world import crds  # noqa: E402
from tests.support.backfill import Series, counter_samples  # noqa: E402
from tests.support.prometheus import PrometheusBinaries, PrometheusServer, free_port  # noqa: E402

NAMESPACES = 10
PASSES = 6
EMULATOR = """
import json, sys, collections
sys.path.insert(0, {repo!r})
from tests.support.kube_emulator import KubeEmulator
from tests.kube.operator_world import install_admission_policies
emulator = KubeEmulator(port={port}, rollout_delay=0.5, history_size=400000).start()
install_admission_policies(emulator)
print("ready", flush=True)
for line in sys.stdin:
    counts = collections.Counter(
        f"{{r.verb}} {{r.resource}}{{'/' + r.subresource if r.subresource else ''}}"
        for r in emulator.requests()
    )
    emulator.clear_requests()
    print(json.dumps(counts), flush=True)
"""
_CRDS = Kind(
    "CustomResourceDefinition",
    "apiextensions.k8s.io",
    "v1",
    "customresourcedefinitions",
    namespaced=False,
)


def history(now: float) -> list[Series]:
    """Six hours of history, and one more ahead: at 10,000 rollouts the first passes take
    many minutes, and the app must still report its mode when the steady passes run."""
    start, end, step = now - 6 * 3600, now + 3600, 60
    labels = {"job": "api"}
    total = counter_samples(start=start, end=end, step=step, per_second=100.0)
    return [
        Series(
            "stage_validation_validations_total",
            {**labels, "result": "ok", "operation": "read"},
            total,
            kind="counter",
        ),
        Series(
            "stage_validation_errors_total",
            {**labels, "reason": "rejected"},
            counter_samples(start=start, end=end, step=step, per_second=0.04),
            kind="counter",
        ),
        Series("http_requests_total", labels, total, kind="counter"),
        Series(
            "stage_warn_unknown_total",
            labels,
            counter_samples(start=start, end=end, step=step, per_second=0.1),
            kind="counter",
        ),
        *(
            Series(
                "stage_validation_mode",
                {**labels, "mode": mode},
                [(t, value) for t, _ in total],
                kind="gauge",
            )
            for mode, value in (("off", 0.0), ("warn", 1.0), ("enforce", 0.0))
        ),
    ]


class GcClock:
    """Time the collector spends, by generation: a pass over many cached objects pays
    for each full collection in proportion to everything the process holds."""

    def __init__(self) -> None:
        self.seconds = [0.0, 0.0, 0.0]
        self.counts = [0, 0, 0]
        self._started = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds[info["generation"]] += time.perf_counter() - self._started
            self.counts[info["generation"]] += 1

    def take(self) -> str:
        said = ", ".join(
            f"gen{g} {self.counts[g]}x {self.seconds[g]:.2f} s" for g in range(3) if self.counts[g]
        )
        self.seconds, self.counts = [0.0, 0.0, 0.0], [0, 0, 0]
        return said or "none"


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def scenario(count: int, old_approvals: int) -> None:
    """One fresh emulator, Prometheus and operator; prints one line per pass."""
    port = free_port()
    emulator = subprocess.Popen(
        [sys.executable, "-c", EMULATOR.format(repo=str(REPO), port=port)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert emulator.stdout is not None and emulator.stdout.readline().strip() == "ready"
    with tempfile.TemporaryDirectory() as work:
        prometheus = PrometheusServer(Path(work), binaries=PrometheusBinaries.locate())
        prometheus.backfill(history(time.time()))
        prometheus.start()
        try:
            run(port, prometheus.url, emulator, count, old_approvals)
        finally:
            prometheus.close()
            emulator.terminate()


def api_calls(emulator: subprocess.Popen[str]) -> Counter[str]:
    """Requests the emulator served since the last call, by 'verb resource'."""
    assert emulator.stdin is not None and emulator.stdout is not None
    emulator.stdin.write("count\n")
    emulator.stdin.flush()
    return Counter(json.loads(emulator.stdout.readline()))


def populate(setup: KubeApi, count: int, old_approvals: int) -> None:
    def one(index: int) -> None:
        namespace, name = f"team-{index % NAMESPACES}", f"svc-{index}"
        setup.create(
            DEPLOYMENTS,
            namespace,
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": name},
                "spec": {
                    "replicas": 1,
                    "selector": {"matchLabels": {"app": name}},
                    "template": {
                        "metadata": {"labels": {"app": name}},
                        "spec": {"containers": [{"name": "c", "image": "pause"}]},
                    },
                },
            },
        )
        rollout = setup.create(
            ROLLOUTS,
            namespace,
            {
                "apiVersion": ROLLOUTS.api_version,
                "kind": ROLLOUTS.name,
                "metadata": {"name": name},
                "spec": {
                    "plan": {"name": "stage-validation-v3"},
                    "target": {"configMap": f"{name}-flags", "deployments": [name]},
                    "serviceAccountName": "stage-rollout",
                    "prometheus": {"endpoint": "default"},
                },
            },
        )
        for number in range(old_approvals):
            setup.create(
                APPROVALS,
                namespace,
                {
                    "apiVersion": APPROVALS.api_version,
                    "kind": APPROVALS.name,
                    "metadata": {"name": f"{name}-old-{number}"},
                    "spec": {
                        "rollout": {"name": name, "uid": rollout["metadata"]["uid"]},
                        "step": "2.1",
                        "planHash": "0" * 64,
                        "approver": "system:anonymous",
                        "reason": "an approval of long ago",
                    },
                },
            )

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(count)))


def run(
    port: int, prometheus_url: str, emulator: subprocess.Popen[str], count: int, old: int
) -> None:
    from kubernetes import client

    configuration = client.Configuration()
    configuration.host = f"http://127.0.0.1:{port}"
    configuration.connection_pool_maxsize = 32
    setup = KubeApi(client.ApiClient(configuration))
    for crd in crds():
        setup._call("POST", _CRDS, None, None, body=crd)
    time.sleep(0.5)
    started = time.perf_counter()
    populate(setup, count, old)
    print(
        f"{count} rollouts in {NAMESPACES} namespaces, {old} old approvals each "
        f"(set up in {time.perf_counter() - started:.0f} s); emulator in a child process; "
        f"Prometheus {prometheus_url}; load {Path('/proc/loadavg').read_text().split()[:3]}",
        flush=True,
    )
    operator = Operator(
        KubeApi(client.ApiClient(configuration)),
        OperatorSettings(
            interval=timedelta(seconds=1),
            granularity=timedelta(seconds=1),
            workers=16,
            prometheus_url=prometheus_url,
            default_service_account="stage-rollout",
        ),
        clock=SystemClock(),
    )
    api_calls(emulator)
    if os.environ.get("OPERATOR_PASS_TRACEMALLOC"):
        import tracemalloc

        tracemalloc.start(int(os.environ["OPERATOR_PASS_TRACEMALLOC"]))
    started, cpu = time.perf_counter(), time.process_time()
    operator.start_caches()
    # Running, as in `Operator.run`: wake-up jobs live in its job store (a stopped
    # scheduler keeps them in a list it scans for each one moved).
    operator.scheduler.start()
    calls = api_calls(emulator)
    print(
        f"caches filled in {time.perf_counter() - started:.2f} s wall, "
        f"{time.process_time() - cpu:.2f} s CPU: {dict(calls)}",
        flush=True,
    )
    steady: list[float] = []
    collector = GcClock()
    for number in range(1, PASSES + 1):
        time.sleep(1.2)
        api_calls(emulator)
        collector.take()
        sent_before = operator.endpoints.queries_sent
        wall, cpu = time.perf_counter(), time.process_time()
        if number == PASSES and os.environ.get("OPERATOR_PASS_PROFILE"):
            import cProfile
            import pstats
            from concurrent.futures import Future

            def inline(fn: Any, *args: Any) -> Future[Any]:
                done: Future[Any] = Future()
                done.set_result(fn(*args))
                return done

            operator._pool.submit = inline  # type: ignore[method-assign]
            profile = cProfile.Profile()
            outcomes = profile.runcall(operator.tick_all)
            if os.environ.get("OPERATOR_PASS_PROFILE_DUMP"):
                profile.dump_stats(os.environ["OPERATOR_PASS_PROFILE_DUMP"])
            pstats.Stats(profile).sort_stats(
                os.environ.get("OPERATOR_PASS_PROFILE_SORT", "tottime")
            ).print_stats(45)
        else:
            outcomes = operator.tick_all()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        collected = collector.take()
        if os.environ.get("OPERATOR_PASS_FREEZE", "1") == "1":
            operator.heap.after_pass()  # as `Operator.run`'s pass job does
        calls = api_calls(emulator)
        sent = operator.endpoints.queries_sent - sent_before
        problems = [o.problem for o in outcomes if o.problem]
        states = Counter(f"{o.step}/{o.state}" for o in outcomes if o.state is not None)
        # A cache's watch that times out resumes whenever it does: not the pass's read.
        watches = sum(n for key, n in calls.items() if key.startswith("watch "))
        reads = sum(n for key, n in calls.items() if key.split(" ")[0] in ("get", "list"))
        writes = sum(calls.values()) - reads - watches
        per = {
            key: round(n / max(len(outcomes), 1), 3)
            for key, n in sorted(calls.items())
            if not key.startswith("watch ")
        }
        print(
            f"pass {number}: {len(outcomes)} rollouts in {wall:.2f} s wall, "
            f"{cpu / max(len(outcomes), 1) * 1000:.2f} ms CPU per rollout, "
            f"API reads {reads} writes {writes} (per rollout {per}; watches resumed {watches}), "
            f"{sent} Prometheus queries, GC {collected}, "
            f"RSS {rss_mib():.0f} MiB (peak {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f}); "
            f"states {dict(states)}; {len(problems)} problems{': ' + str(problems[0]) if problems else ''}",
            flush=True,
        )
        if reads == 0 and writes == 0:
            steady.append(wall)
    found, seconds = collect_whole()
    print(
        f"one full collection of the whole heap (the heap keeper's, every 10 minutes): "
        f"{seconds:.2f} s, {found} unreachable objects found",
        flush=True,
    )
    if os.environ.get("OPERATOR_PASS_TRACEMALLOC"):
        import tracemalloc

        snapshot = tracemalloc.take_snapshot()
        traced, peak = tracemalloc.get_traced_memory()
        print(
            f"tracemalloc: {traced / 2**20:.0f} MiB traced (peak {peak / 2**20:.0f}) "
            f"of RSS {rss_mib():.0f} MiB"
        )
        for group in ("filename", "lineno"):
            top = snapshot.statistics(group)[:15]
            print("\n".join(str(line) for line in top))
        if int(os.environ["OPERATOR_PASS_TRACEMALLOC"]) > 1:
            for stat in snapshot.statistics("traceback")[:12]:
                print(stat, *stat.traceback.format()[-24:], sep="\n  ")
    if os.environ.get("OPERATOR_PASS_MALLOCSTATS"):
        sys._debugmallocstats()  # to stderr: pymalloc's arenas against the blocks in use
    operator.stop.set()
    operator.scheduler.shutdown(wait=False)
    best = min(steady) if steady else float("nan")
    print(
        f"RESULT rollouts={count} old_approvals={old} steady_passes={len(steady)} "
        f"best_steady_wall={best:.3f} rss_mib={rss_mib():.0f} at {datetime.now(UTC).isoformat()}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rollouts", type=int, default=1000)
    parser.add_argument("--old-approvals", type=int, default=10)
    parser.add_argument("--one", action="store_true", help="run one scenario in this process")
    parser.add_argument("--with-old", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        scenario(args.rollouts, args.with_old)
        return
    results: dict[int, float] = {}
    for old in (0, args.old_approvals):
        answer = subprocess.run(
            [
                sys.executable,
                __file__,
                "--one",
                "--rollouts",
                str(args.rollouts),
                "--with-old",
                str(old),
            ],
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            check=True,
        )
        print(answer.stdout, end="", flush=True)
        last = [line for line in answer.stdout.splitlines() if line.startswith("RESULT")]
        results[old] = (
            float(last[-1].split("best_steady_wall=")[1].split()[0]) if last else float("nan")
        )
    none, some = results[0], results[args.old_approvals]
    print(
        f"steady pass with {args.old_approvals} old approvals per rollout / with none: "
        f"{some:.3f} s / {none:.3f} s = {some / none:.2f} (target <= 1.10)"
    )


if __name__ == "__main__":
    main()
