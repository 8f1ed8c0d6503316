"""`replay` of the bundled plan over 16 days of backfilled history in a real Prometheus.

The history (tests/prometheus/history.py) holds the reference app's own series at
a one-minute step, ending three hours before now; it is turned into TSDB blocks by
``promtool tsdb create-blocks-from openmetrics``. The plan is the bundled one,
unchanged: 24h and 48h gate windows, 30m canary windows, 5m triggers, 48h soaks.
Replays tick every 15 minutes of virtual time.

In a replay the in-memory target reports the mode the flags ask for, so the plan's
`observed_mode` query is never read (controller/observing.py only asks the metrics
source when the target reports no modes at all); the mode gauge is in the history
for realism, and a test checks that it is not read.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from controller.catalog import load_plan
from controller.driving import RunResult
from controller.ports import WindowRequest
from controller.prometheus.source import PrometheusSettings, PrometheusSource
from controller.sim.replay import replay
from phases.plan import SignalGate, SignalTrigger
from phases.status import StepState, TransitionRecord
from phases.steps import steps_of
from phases.verdicts import Outcome, judge_gate
from tests.prometheus.history import Shape, backfill_in_chunks, reference_app_history, spike
from tests.support import REPO_ROOT
from tests.support.prometheus import PrometheusBinaries, PrometheusServer

pytestmark = pytest.mark.prometheus

PLAN = load_plan()
STEPS = steps_of(PLAN)
TICK = timedelta(minutes=15)
HISTORY = timedelta(days=16)
PROMOTIONS = ["2.4", "2.5", "2.7", "3@10", "3@25", "3@50", "3@100", "4"]
SPIKE_DELAY = timedelta(hours=1)  # after 3@50 is in effect: past its 30m degradation window
SPIKE_LENGTH = timedelta(hours=2)
SPIKE_RATIO = 0.08


@dataclass(frozen=True)
class Timeline:
    start: datetime  # first sample of the history
    end: datetime  # last sample
    replay_start: datetime  # 10 minutes in, so that rate(...[5m]) has data from the first tick


@pytest.fixture(scope="module")
def timeline() -> Timeline:
    end = int(time.time()) // 60 * 60 - 3 * 3600
    last = datetime.fromtimestamp(end, UTC)
    return Timeline(last - HISTORY, last, last - HISTORY + timedelta(minutes=10))


class RecordingSource(PrometheusSource):
    """The real source, noting which windows the replay asked for and whether modes were read."""

    def __init__(self, url: str) -> None:
        super().__init__(PrometheusSettings(url=url), PLAN.evaluation.resolution)
        self.windows: set[timedelta] = set()
        self.mode_reads = 0

    def prefetch(self, requests_: Iterable[WindowRequest], at: datetime) -> None:
        wanted = list(requests_)
        self.windows.update(request.window for request in wanted)
        super().prefetch(wanted, at)

    def modes(self, query: str, at: datetime) -> tuple[float, ...] | None:
        self.mode_reads += 1
        return super().modes(query, at)


def history_server(
    binaries: PrometheusBinaries,
    factory: pytest.TempPathFactory,
    name: str,
    shape: Shape,
    t: Timeline,
) -> PrometheusServer:
    server = PrometheusServer(factory.mktemp(name), binaries=binaries)
    history = reference_app_history(
        start=t.start.timestamp(), end=t.end.timestamp(), step=60.0, shape=shape
    )
    assert len(history) == 18  # few series: 6 counters, 9 histogram, 3 gauge
    backfill_in_chunks(server, history)
    return server.start()


@pytest.fixture(scope="module")
def healthy_server(
    prometheus_binary: PrometheusBinaries,
    tmp_path_factory: pytest.TempPathFactory,
    timeline: Timeline,
) -> Iterator[PrometheusServer]:
    server = history_server(prometheus_binary, tmp_path_factory, "healthy", Shape(), timeline)
    yield server
    server.close()


@dataclass(frozen=True)
class Replayed:
    result: RunResult
    source: RecordingSource
    seconds: float


@pytest.fixture(scope="module")
def healthy_replay(healthy_server: PrometheusServer, timeline: Timeline) -> Iterator[Replayed]:
    source = RecordingSource(healthy_server.url)
    started = time.monotonic()
    result = replay(
        PLAN, source, start=timeline.replay_start, end=timeline.end, tick=TICK, approvals="auto"
    )
    yield Replayed(result, source, time.monotonic() - started)
    source.close()


def moves(result: RunResult, trigger: str) -> list[TransitionRecord]:
    return [t for t in result.transitions if t.trigger == trigger]


def entered_in_effect(result: RunResult, step: str) -> datetime:
    """When the step's flags were in effect (its soak started): its first `verified`."""
    return next(t.at for t in result.transitions if t.to_step == step and t.trigger == "verified")


def test_healthy_history_replays_the_bundled_plan_to_completion(healthy_replay: Replayed) -> None:
    result, source = healthy_replay.result, healthy_replay.source
    print(
        f"healthy replay: {result.ticks} ticks, {source.queries_sent} queries, {healthy_replay.seconds:.1f}s"
    )
    assert (result.final.step, result.final.state) == ("4", StepState.COMPLETED)
    assert [t.to_step for t in moves(result, "promote")] == PROMOTIONS
    assert [percent for _, percent in result.percent_changes] == [0, 10, 25, 50, 100]
    assert not {"rollback", "pause", "stall", "gates_lost"} & {
        t.trigger for t in result.transitions
    }

    # Each step promoted once its soak and its gates' windows were covered, not earlier,
    # and (healthy data, instant approvals) within two ticks after that.
    for promotion in [*moves(result, "promote"), *moves(result, "complete")]:
        step = STEPS.get(promotion.from_step)
        in_effect = entered_in_effect(result, step.id)
        windows = [g.window for g in step.gates if isinstance(g, SignalGate)]
        earliest = in_effect + max([step.min_duration, *windows])
        assert earliest <= promotion.at <= earliest + 2 * TICK, (step.id, promotion)

    # The plan's real windows were read: 24h and 48h gates, 30m canaries, 5m triggers.
    plan_windows = {
        w.window if isinstance(w, SignalGate) else w.sustained_for
        for s in STEPS.steps
        for w in (*s.gates, *s.triggers)
        if isinstance(w, SignalGate | SignalTrigger)
    }
    assert plan_windows == {
        timedelta(hours=24),
        timedelta(hours=48),
        timedelta(minutes=30),
        timedelta(minutes=5),
    }
    assert source.windows == plan_windows
    assert source.mode_reads == 0

    # The baselines captured at 2.1 are the history's: error ratio 0.04 %, p99 ~0.25 ms.
    baselines = result.final.baselines
    assert baselines["error_ratio"].value == pytest.approx(0.0004, rel=1e-3)
    assert baselines["p99_latency_seconds"].value == pytest.approx(0.000248, rel=0.01)
    # Each is a record of where and from which query over which window it was averaged.
    for signal, record in baselines.items():
        assert (record.environment, record.step) == ("staging", "2.1")
        assert record.query == result.plan.signals[signal].query
        assert record.window_from is not None and record.window_to is not None
        assert record.window_to - record.window_from >= timedelta(hours=24)


def test_the_history_reads_back_as_designed_over_48h(
    healthy_server: PrometheusServer, timeline: Timeline
) -> None:
    source = PrometheusSource(
        PrometheusSettings(url=healthy_server.url), PLAN.evaluation.resolution
    )
    at = timeline.end - timedelta(hours=1)
    window = timedelta(hours=48)
    expected = {
        "error_ratio": 0.0004,
        "p99_latency_seconds": 0.000248,
        "unknown_stage_ratio": 0.001,
        "would_reject_ratio": 0.002,
        "invalid_write_ratio": 0.0,
    }
    for signal, value in expected.items():
        summary = source.summarize(signal, PLAN.signals[signal].query, window, at)
        assert summary.error is None and summary.series == 1, (signal, summary)
        assert summary.count == 48 * 60 + 1, (signal, summary.count)
        assert summary.largest_gap == timedelta(0)
        assert summary.minimum == pytest.approx(value, rel=0.01, abs=1e-12), signal
        assert summary.maximum == pytest.approx(value, rel=0.01, abs=1e-12), signal
    gate = next(g for g in STEPS.get("3@50").gates if g.key == "increase-error-rate")
    assert isinstance(gate, SignalGate)
    summary = source.summarize("error_ratio", PLAN.signals["error_ratio"].query, gate.window, at)
    verdict = judge_gate(gate, summary, {}, PLAN.evaluation.gap_tolerance)
    assert verdict.outcome is Outcome.PASS
    assert verdict.observed == pytest.approx(0.0004, rel=1e-3)
    assert verdict.samples == 2881
    source.close()


def test_stagectl_replay_json_on_the_healthy_history(
    healthy_server: PrometheusServer, healthy_replay: Replayed, timeline: Timeline
) -> None:
    started = time.monotonic()
    completed = subprocess.run(
        [
            sys.executable,
            "-c",
            "from controller.cli.main import run; run()",
            "replay",
            "--prometheus",
            healthy_server.url,
            "--start",
            timeline.replay_start.isoformat(),
            "--end",
            timeline.end.isoformat().replace("+00:00", "Z"),
            "--tick",
            "15m",
            "--output",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO_ROOT,
        check=False,
    )
    print(f"stagectl replay: {time.monotonic() - started:.1f}s")
    assert completed.returncode == 0, completed.stderr
    document = json.loads(completed.stdout)
    assert (document["final_step"], document["final_status"], document["final_percent"]) == (
        "4",
        "completed",
        100,
    )
    assert document["prometheus"] == healthy_server.url
    assert document["queries_sent"] > 0
    transitions = document["transitions"]
    assert [t["to"] for t in transitions if t["trigger"] == "promote"] == PROMOTIONS
    # The command and the library agree, tick for tick.
    start = timeline.replay_start.timestamp()
    assert [(t["at_seconds"], t["from"], t["to"], t["trigger"]) for t in transitions] == [
        (t.at.timestamp() - start, t.from_step, t.to_step, t.trigger)
        for t in healthy_replay.result.transitions
    ]


@dataclass(frozen=True)
class Spiked:
    result: RunResult
    start: datetime
    end: datetime
    seconds: float


def replay_with_spike(
    binaries: PrometheusBinaries,
    factory: pytest.TempPathFactory,
    healthy: Replayed,
    t: Timeline,
    length: timedelta,
) -> Spiked:
    """Replay a history whose error ratio is 8 % for `length`, an hour into 3@50.

    The healthy replay says when 3@50's flags were in effect; both histories are the
    same until the spike, so the spiked replay reaches 3@50 at the same tick.
    """
    spike_start = entered_in_effect(healthy.result, "3@50") + SPIKE_DELAY
    spike_end = spike_start + length
    shape = Shape(
        error_ratio=spike(0.0004, SPIKE_RATIO, spike_start.timestamp(), spike_end.timestamp())
    )
    server = history_server(binaries, factory, "spike", shape, t)
    source = RecordingSource(server.url)
    started = time.monotonic()
    try:
        result = replay(
            PLAN,
            source,
            start=t.replay_start,
            end=spike_end + timedelta(hours=3),
            tick=TICK,
            approvals="auto",
        )
    finally:
        source.close()
        server.close()
    seconds = time.monotonic() - started
    print(f"spike {length}: {result.ticks} ticks, {source.queries_sent} queries, {seconds:.1f}s")
    # Up to the spike the two histories are the same, and so are the decisions.
    assert [(x.at, x.to_step, x.trigger) for x in result.transitions if x.at < spike_start] == [
        (x.at, x.to_step, x.trigger) for x in healthy.result.transitions if x.at < spike_start
    ]
    return Spiked(result, spike_start, spike_end, seconds)


def test_an_error_spike_after_3at50_rolls_back_to_3at25_which_then_holds(
    prometheus_binary: PrometheusBinaries,
    tmp_path_factory: pytest.TempPathFactory,
    healthy_replay: Replayed,
    timeline: Timeline,
) -> None:
    # 20 minutes: over before 3@25's flags are back in effect, so only 3@50 is to blame.
    spiked = replay_with_spike(
        prometheus_binary, tmp_path_factory, healthy_replay, timeline, timedelta(minutes=20)
    )
    result = spiked.result
    rollbacks = moves(result, "rollback")
    assert len(rollbacks) == 1, result.transitions
    rollback = rollbacks[0]
    assert (rollback.from_step, rollback.to_step) == ("3@50", "3@25")
    # The trigger needs 5 minutes of samples all above 5 %: the first tick that has them.
    assert spiked.start + timedelta(minutes=5) < rollback.at <= spiked.start + TICK
    assert "error-rate-above-5pct" in rollback.reason
    assert "canary-error-rate-degraded" not in rollback.reason  # past the 30m window
    assert "least 0.08" in rollback.reason
    assert (result.final.step, result.final.state) == ("3@25", StepState.SOAKING)
    assert result.final.rollbacks == 1
    assert result.final.hold_for_approval  # promoting again needs a new approval
    assert "3@100" not in {t.to_step for t in result.transitions}
    assert [p for _, p in result.percent_changes] == [0, 10, 25, 50, 25]


def test_errors_that_outlast_a_rollback_cost_one_step_and_hold(
    prometheus_binary: PrometheusBinaries,
    tmp_path_factory: pytest.TempPathFactory,
    healthy_replay: Replayed,
    timeline: Timeline,
) -> None:
    """8 % for two hours. A replayed past cannot react to a rollback, so the errors
    go on at 25 %: one episode, so one step back ("rollback to previous percentage"),
    and 3@25 holds while they last, and after."""
    spiked = replay_with_spike(
        prometheus_binary, tmp_path_factory, healthy_replay, timeline, SPIKE_LENGTH
    )
    result = spiked.result
    rollbacks = moves(result, "rollback")
    assert rollbacks, result.transitions
    assert (rollbacks[0].from_step, rollbacks[0].to_step) == ("3@50", "3@25")
    assert spiked.start + timedelta(minutes=5) < rollbacks[0].at <= spiked.start + TICK
    for rollback in rollbacks:
        left = STEPS.get(rollback.from_step)
        assert STEPS.before(left) is not None
        assert rollback.to_step == STEPS.before(left).id, rollback  # one step back
        assert "error-rate-above-5pct" in rollback.reason
        # Evidence only from the flags of the step it leaves, and only from the spike.
        entered = max(
            t.at for t in result.transitions if t.to_step == left.id and t.at < rollback.at
        )
        assert rollback.at - timedelta(minutes=5) >= entered, rollback
        assert spiked.start < rollback.at <= spiked.end + TICK, rollback
    assert [r.from_step for r in rollbacks] == ["3@50"]
    assert result.final.step == "3@25"
    after = [t for t in result.transitions if t.at > spiked.end + TICK]
    assert not [t for t in after if t.trigger == "rollback"]
    assert result.final.rollbacks == len(rollbacks)
