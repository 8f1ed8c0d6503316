"""PrometheusSource against a real Prometheus, judged with the core's rules.

Every read goes to a real ``prometheus`` process scraping the reference app at 1s
(or, for the slow-server case, to a loopback socket that never answers). The
queries are the bundled plan's own signal queries, and the verdicts come from
`phases.needs.judge`, i.e. `judge_gate`/`judge_trigger`, so what is asserted here is
what the operator would conclude. Gate windows are shortened to seconds (a copy of
the plan's gate with another `window`), since live data covers only the test's
lifetime; thresholds, comparators and queries stay the plan's.

Prometheus 2.42 starts scraping a static target about 5 seconds after it starts.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from controller.catalog import load_plan, read_plan
from controller.cli.main import app as stagectl_app
from controller.driving import World, drive
from controller.observing import observe
from controller.ports import WindowRequest
from controller.prometheus.source import PrometheusSettings, PrometheusSource
from controller.sim.replay import replay
from controller.sim.scripted_world import ScriptedJobs, target_for
from examples.reference_app.load import LoadGenerator
from examples.reference_app.server import Faults, ReferenceApp
from examples.reference_app.validation import AppConfig
from phases.decide import decide
from phases.needs import AlertReading, Needs, WindowCheck, judge, needs_of
from phases.observations import Approval, Command
from phases.plan import SignalGate, SignalTrigger
from phases.status import StepState, initial_status
from phases.steps import steps_of
from phases.verdicts import Outcome, Verdict
from tests.support.prometheus import PrometheusBinaries, PrometheusServer

pytestmark = pytest.mark.prometheus

MakeServer = Callable[..., PrometheusServer]
MakeApp = Callable[..., ReferenceApp]

PLAN = load_plan()
QUERIES = {name: signal.query for name, signal in PLAN.signals.items()}
STEP_3 = steps_of(PLAN).get("3@10")
GATES = {gate.key: gate for gate in STEP_3.gates if isinstance(gate, SignalGate)}
TRIGGERS = {t.key: t for t in STEP_3.triggers if isinstance(t, SignalTrigger)}
STATUS = initial_status(PLAN.content_hash, "3@10", datetime(2026, 1, 5, tzinfo=UTC))
# Live data has 1s samples, so windows of seconds are read at a 1s resolution.
RESOLUTION = timedelta(seconds=1)
SHORT = timedelta(seconds=15)
APP_ENDPOINT = "/api/monte-carlo/simulate"


# --- helpers -----------------------------------------------------------------


def now() -> datetime:
    return datetime.now(UTC)


_OPEN: list[PrometheusSource] = []


def source_for(url: str, **settings: Any) -> PrometheusSource:
    """A source reading at 1s resolution; closed after the test (see `close_sources`)."""
    source = PrometheusSource(PrometheusSettings(url=url, **settings), RESOLUTION)
    _OPEN.append(source)
    return source


@pytest.fixture(autouse=True)
def close_sources() -> Iterator[None]:
    yield
    while _OPEN:
        _OPEN.pop().close()


def gate_check(key: str, window: timedelta = SHORT) -> WindowCheck:
    """The plan's gate `key` over a shorter window (same signal, query, threshold)."""
    gate = GATES[key].model_copy(update={"window": window})
    return WindowCheck("gate", key, gate.signal, QUERIES[gate.signal], window, gate)


def trigger_check(key: str, window: timedelta = SHORT) -> WindowCheck:
    trigger = TRIGGERS[key].model_copy(update={"sustained_for": window})
    return WindowCheck("trigger", key, trigger.signal, QUERIES[trigger.signal], window, trigger)


def verdicts(
    source: PrometheusSource, checks: list[WindowCheck], at: datetime
) -> dict[str, Verdict]:
    """Read each check's window once and judge it exactly as `observe` does."""
    summaries = {
        (c.query, c.window): source.summarize(c.signal, c.query, c.window, at) for c in checks
    }
    gates, triggers = judge(
        PLAN, STATUS, Needs(windows=tuple(checks)), summaries, AlertReading(frozenset())
    )
    return {**gates, **triggers}


def scraping(make: Callable[..., PrometheusServer], app: ReferenceApp) -> PrometheusServer:
    return make(scrape_targets={"stage-app": [f"127.0.0.1:{app.port}"]})


def wait_for_scrapes(server: PrometheusServer, count: int) -> None:
    server.wait_for(
        'count_over_time(up{job="stage-app"}[5m])', lambda n: n >= count, timeout=count + 30
    )


class NoPeople:
    def approvals(self, at: datetime) -> list[Approval]:
        return []

    def commands(self, at: datetime) -> list[Command]:
        return []


@dataclass
class Live:
    app: ReferenceApp
    server: PrometheusServer
    load: LoadGenerator


@pytest.fixture(scope="module")
def healthy(
    prometheus_binary: PrometheusBinaries, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Live]:
    """Warn mode, canonical stages only, 50 requests/s, scraped every second."""
    app = ReferenceApp(AppConfig(mode="warn"), seed=21).start()
    server = PrometheusServer(
        tmp_path_factory.mktemp("healthy-prometheus"),
        binaries=prometheus_binary,
        scrape_targets={"stage-app": [f"127.0.0.1:{app.port}"]},
    )
    load = LoadGenerator(app.url, rate=50, duration=300, seed=22)
    try:
        server.start()
        load.start()
        server.wait_for("sum(stage_validation_validations_total)", lambda n: n > 0, timeout=30)
        wait_for_scrapes(server, 20)
        yield Live(app, server, load)
    finally:
        load.stop()
        server.close()
        app.stop()


# --- healthy traffic -----------------------------------------------------------


def test_healthy_traffic_passes_the_error_ratio_gate_with_evidence(healthy: Live) -> None:
    source = source_for(healthy.server.url)
    at = now()
    found = verdicts(
        source,
        [
            gate_check("canary-error-rate"),
            gate_check("canary-p99-latency"),
            gate_check("canary-unknown-stage-rate"),
            trigger_check("error-rate-above-5pct"),
        ],
        at,
    )
    error_gate = found["canary-error-rate"]
    assert error_gate.outcome is Outcome.PASS, error_gate
    assert error_gate.query == QUERIES["error_ratio"]
    assert error_gate.window == SHORT
    assert error_gate.samples >= 14  # one per second of the 15s window
    assert error_gate.observed == 0.0  # canonical stages, no faults: not one error
    assert error_gate.threshold == 0.001
    assert "error_ratio < 0.001 held for 15s" in error_gate.reason
    assert found["canary-p99-latency"].outcome is Outcome.PASS, found["canary-p99-latency"]
    assert 0 < (found["canary-p99-latency"].observed or 0) < 0.001
    assert found["canary-unknown-stage-rate"].outcome is Outcome.PASS
    assert found["error-rate-above-5pct"].outcome is Outcome.PASS
    # The other reads of the port agree: the app runs in warn (1), errors average 0.
    assert source.modes(QUERIES["observed_mode"], at) == (1.0,)
    assert source.average("error_ratio", QUERIES["error_ratio"], at - SHORT, at) == 0.0
    alerts = source.firing_alerts(["StageValidationHighErrorRate"], at)
    assert (alerts.firing, alerts.error) == (frozenset(), None)


def test_many_rollouts_asking_for_the_same_alerts_at_once_send_one_query_a_pass(
    healthy: Live,
) -> None:
    """Issue 13: the ALERTS cache was filled outside its lock, so one pass sent it often."""
    source = source_for(healthy.server.url)
    at = now() - timedelta(seconds=2)
    source.prefetch([], at)
    names = ["StageValidationHighErrorRate", "StageValidationDown"]
    start, before = threading.Barrier(16), source.queries_sent
    answers: list[Any] = []

    def rollout_tick() -> None:
        start.wait()
        answers.append(source.firing_alerts(names, at))
        answers.append(source.alert_history(names, None, timedelta(seconds=10), at))

    threads = [threading.Thread(target=rollout_tick) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert source.queries_sent - before == 2  # one instant ALERTS, one range ALERTS
    assert len({id(a) for a in answers}) == 2  # every rollout got the same two answers
    source.prefetch([], at + timedelta(seconds=1))  # the next pass asks again
    source.firing_alerts(names, at + timedelta(seconds=1))
    assert source.queries_sent - before == 3


def test_a_query_giving_several_series_is_unknown_never_pass(healthy: Live) -> None:
    source = source_for(healthy.server.url)
    by_operation = "sum by (operation) (rate(stage_validation_validations_total[5m]))"
    # The errors counter exists for 4 endpoints x 2 reasons from the start.
    without_sum = "rate(stage_validation_errors_total[5m])"
    gate = GATES["canary-error-rate"].model_copy(update={"window": SHORT})
    trigger = TRIGGERS["error-rate-above-5pct"].model_copy(update={"sustained_for": SHORT})
    checks = [
        WindowCheck("gate", "two-series", "error_ratio", by_operation, SHORT, gate),
        WindowCheck("gate", "eight-series", "error_ratio", without_sum, SHORT, gate),
        WindowCheck("trigger", "two-series-trigger", "error_ratio", by_operation, SHORT, trigger),
    ]
    found = verdicts(source, checks, now())
    assert found["two-series"].outcome is Outcome.UNKNOWN
    assert found["two-series"].reason == "2 series where the query must give one number"
    assert found["eight-series"].outcome is Outcome.UNKNOWN
    assert found["eight-series"].reason == "8 series where the query must give one number"
    # A trigger is not "healthy" on an ambiguous answer either: it holds.
    assert found["two-series-trigger"].outcome is Outcome.UNKNOWN
    assert found["two-series-trigger"].reason.startswith("2 series")


def test_an_invalid_query_carries_prometheus_parse_error(healthy: Live) -> None:
    source = source_for(healthy.server.url)
    broken = "sum(rate(stage_validation_errors_total[5m])"
    gate = GATES["canary-error-rate"].model_copy(update={"window": SHORT})
    found = verdicts(
        source, [WindowCheck("gate", "broken", "error_ratio", broken, SHORT, gate)], now()
    )
    verdict = found["broken"]
    assert verdict.outcome is Outcome.UNKNOWN
    assert "bad_data" in verdict.reason
    assert "parse error" in verdict.reason
    assert "unclosed left parenthesis" in verdict.reason
    complaint = source.check_query(broken, now())
    assert complaint is not None and "bad_data" in complaint and "parse error" in complaint
    assert source.check_query(QUERIES["error_ratio"], now()) is None


def test_plan_validate_against_prometheus_names_the_broken_signal_query(
    healthy: Live, tmp_path: Path
) -> None:
    text, _ = read_plan()
    good_query = "sum by (le) (rate(stage_validation_duration_seconds_bucket[5m])))"
    assert text.count(good_query) == 1
    broken = tmp_path / "broken-plan.yaml"
    broken.write_text(
        text.replace(good_query, "sum by (le) (rate(stage_validation_duration_seconds_bucket[5m]))")
    )
    lines = broken.read_text().splitlines()
    signal_line = lines.index("  p99_latency_seconds:")
    query_line = next(
        n + 1 for n in range(signal_line, len(lines)) if lines[n].strip().startswith("query:")
    )
    runner = CliRunner()

    result = runner.invoke(
        stagectl_app, ["plan", "validate", str(broken), "--prometheus", healthy.server.url]
    )
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert result.stdout == ""
    assert f"signals.p99_latency_seconds.query, line {query_line}:" in result.stderr
    assert "bad_data" in result.stderr and "parse error" in result.stderr
    assert "error_ratio" not in result.stderr  # only the broken signal is named

    good = runner.invoke(
        stagectl_app,
        ["plan", "validate", "stage-validation-v3", "--prometheus", healthy.server.url],
    )
    assert good.exit_code == 0, good.stderr
    assert "accepts all 6 signal queries" in good.stdout


def test_prefetch_sends_each_distinct_window_once_and_summarize_reuses_it(healthy: Live) -> None:
    source = source_for(healthy.server.url)
    at = now() - timedelta(seconds=3)  # past: no scrape can still land inside the windows
    short, longer = timedelta(seconds=8), timedelta(seconds=14)
    distinct = [
        WindowRequest(QUERIES["error_ratio"], short),
        WindowRequest(QUERIES["p99_latency_seconds"], short),
        WindowRequest(QUERIES["error_ratio"], longer),
    ]
    requests = [distinct[n % 3] for n in range(10)]  # 10 rollouts' needs, 3 distinct
    before = source.queries_sent
    source.prefetch(requests, at)
    assert source.queries_sent - before == 3

    read = [source.summarize("s", r.query, r.window, at) for r in requests]
    assert source.queries_sent - before == 3  # all ten answered from the tick's cache
    for request, summary in zip(requests, read, strict=True):
        assert (summary.query, summary.window) == (request.query, request.window)
        assert summary.error is None and summary.count > 0
    assert read[0] is read[3] is read[6] is read[9]
    assert read[0] is not read[2]  # same query, other window: its own read
    assert (read[0].count, read[2].count) == (9, 15)  # one sample a second, both ends in

    # What the cache answers is what Prometheus answers for that tick.
    fresh = source_for(healthy.server.url).summarize("s", distinct[1].query, short, at)
    assert (fresh.count, fresh.maximum, fresh.last) == (
        read[1].count,
        read[1].maximum,
        read[1].last,
    )

    # Another tick is not answered from this one's cache.
    source.summarize("s", distinct[0].query, short, at + timedelta(seconds=1))
    assert source.queries_sent - before == 4


# --- injected errors -------------------------------------------------------------


def test_injected_errors_fail_the_error_gate_and_not_the_latency_gate(
    prometheus_server: MakeServer, reference_app: MakeApp
) -> None:
    app = reference_app(AppConfig(mode="warn"), faults=Faults(internal_error_fraction=0.2), seed=31)
    server = scraping(prometheus_server, app)
    with LoadGenerator(app.url, rate=100, duration=120, seed=32) as load:
        server.wait_for("sum(stage_validation_validations_total)", lambda n: n >= 2500, timeout=60)
        at = now()
        found = verdicts(
            source_for(server.url),
            [
                gate_check("canary-error-rate", timedelta(seconds=10)),
                gate_check("canary-p99-latency", timedelta(seconds=10)),
                gate_check("canary-unknown-stage-rate", timedelta(seconds=10)),
                trigger_check("error-rate-above-5pct", timedelta(seconds=10)),
            ],
            at,
        )
        stats = load.stats()
    assert stats.responses.get(500, 0) > 0
    error_gate = found["canary-error-rate"]
    assert error_gate.outcome is Outcome.FAIL, error_gate
    assert error_gate.observed == pytest.approx(0.2, abs=0.06)
    assert error_gate.samples >= 9
    assert "error_ratio reached" in error_gate.reason and "needs < 0.001" in error_gate.reason
    # Every sample of the window is degraded: the rollback trigger has its evidence.
    trigger = found["error-rate-above-5pct"]
    assert trigger.outcome is Outcome.FAIL, trigger
    assert trigger.observed == pytest.approx(0.2, abs=0.06)
    # The right gate fails: latency and unknown stages are fine.
    assert found["canary-p99-latency"].outcome is Outcome.PASS, found["canary-p99-latency"]
    assert found["canary-unknown-stage-rate"].outcome is Outcome.PASS


# --- zero traffic --------------------------------------------------------------


def test_zero_traffic_is_unknown_no_data_then_nan_never_pass(
    prometheus_server: MakeServer, reference_app: MakeApp
) -> None:
    app = reference_app(AppConfig(mode="warn"))
    server = scraping(prometheus_server, app)
    wait_for_scrapes(server, 6)
    source = source_for(server.url)
    window = timedelta(seconds=5)
    checks = [
        gate_check("canary-error-rate", window),
        gate_check("canary-p99-latency", window),
        gate_check("canary-unknown-stage-rate", window),
        trigger_check("error-rate-above-5pct", window),
    ]
    assert source.modes(QUERIES["observed_mode"], now()) == (1.0,)  # the app is scraped

    found = verdicts(source, checks, now())
    for key, verdict in found.items():
        assert verdict.outcome is Outcome.UNKNOWN, (key, verdict)
        assert verdict.reason == "no data in the last 5s", (key, verdict)
        assert verdict.samples == 0 and verdict.observed is None

    # Series that exist but never move (a client that pre-creates its labels): 0/0.
    app.metrics.validations.labels(APP_ENDPOINT, "read", "warn", "ok")
    app.metrics.duration.labels(APP_ENDPOINT)
    app.metrics.requests.labels(APP_ENDPOINT, "POST", "200")
    server.wait_for(
        "count_over_time(stage_validation_validations_total[5m])", lambda n: n >= 9, timeout=30
    )
    found = verdicts(source, checks, now())
    for key, verdict in found.items():
        assert verdict.outcome is Outcome.UNKNOWN, (key, verdict)
        assert verdict.reason.endswith("samples are NaN or infinite"), (key, verdict)
        assert verdict.samples >= 4


# --- the app goes away, Prometheus stays ---------------------------------------------


def test_a_window_after_the_target_went_down_is_not_a_pass(
    prometheus_server: MakeServer, reference_app: MakeApp
) -> None:
    """ARCHITECTURE: `unknown` (no data, NaN, Prometheus down, stale samples) never promotes.

    Once the app stops answering scrapes, Prometheus marks its series stale (``up``
    is 0, instant selectors return nothing), but ``rate(...[5m])`` keeps computing
    values from the last raw samples for five more minutes. A window lying wholly
    after the target went down holds no fresh sample; it must not pass.
    """
    app = reference_app(AppConfig(mode="warn"), seed=51)
    server = scraping(prometheus_server, app)
    with LoadGenerator(app.url, rate=50, duration=120, seed=52):
        server.wait_for("sum(stage_validation_validations_total)", lambda n: n > 0, timeout=30)
        wait_for_scrapes(server, 12)
    app.stop()
    server.wait_for('up{job="stage-app"}', lambda up: up == 0, timeout=10)
    down = now()
    time.sleep(10)
    window = timedelta(seconds=8)
    at = now()
    assert at - window > down
    source = source_for(server.url)
    assert source.modes(QUERIES["observed_mode"], at) == ()  # the mode gauge is stale already
    found = verdicts(
        source,
        [
            gate_check("canary-error-rate", window),
            gate_check("canary-p99-latency", window),
            gate_check("canary-unknown-stage-rate", window),
        ],
        at,
    )
    for key, verdict in found.items():
        assert verdict.outcome is Outcome.UNKNOWN, (key, verdict)


# --- Prometheus goes away mid-run ---------------------------------------------------


def test_prometheus_stopped_mid_run_gives_unknown_and_ticks_go_on(
    prometheus_server: MakeServer, reference_app: MakeApp
) -> None:
    app = reference_app(AppConfig(mode="warn"), seed=41)
    server = scraping(prometheus_server, app)
    source = source_for(server.url, retries=1, backoff_seconds=0.1)
    checks = [gate_check("canary-error-rate"), trigger_check("error-rate-above-5pct")]
    with LoadGenerator(app.url, rate=50, duration=120, seed=42):
        server.wait_for("sum(stage_validation_validations_total)", lambda n: n > 0, timeout=30)
        wait_for_scrapes(server, 18)
        assert verdicts(source, checks, now())["canary-error-rate"].outcome is Outcome.PASS

        server.stop()
        at = now()
        summary = source.summarize("error_ratio", QUERIES["error_ratio"], SHORT, at)
        assert summary.error is not None and "Prometheus unreachable" in summary.error
        assert "Connection refused" in summary.error
        found = verdicts(source, checks, at)
        for key, verdict in found.items():
            assert verdict.outcome is Outcome.UNKNOWN, (key, verdict)
            assert "Prometheus unreachable" in verdict.reason
        alerts = source.firing_alerts(["StageValidationHighErrorRate"], at)
        assert alerts.firing is None
        assert alerts.error is not None and "Prometheus unreachable" in alerts.error
        assert source.modes(QUERIES["observed_mode"], at) is None
        assert source.average("error_ratio", QUERIES["error_ratio"], at - SHORT, at) is None

        # The tick loop carries on blind: no exception, no pause, no rollback.
        sent = source.queries_sent
        world = World(
            rollout_uid="outage",
            metrics=source,
            target=target_for(PLAN, timedelta(0)),
            people=NoPeople(),
            jobs=ScriptedJobs({}),
        )
        result = drive(
            PLAN,
            world,
            start=at,
            end=at + timedelta(minutes=3),
            tick=timedelta(minutes=1),
            idle_gates=True,
        )
        assert result.ticks == 4
        assert (result.final.step, result.final.state) == ("2.1", StepState.SOAKING)
        assert [t.trigger for t in result.transitions] == ["verified"]
        assert source.queries_sent > sent  # it did try to read
        # What the next tick sees: every gate and trigger of 2.1 unknown, with the error.
        tick = at + timedelta(minutes=4)
        needs = needs_of(PLAN, result.final, tick, idle_gates=True)
        seen = observe(
            PLAN,
            result.final,
            needs,
            tick,
            rollout_uid="outage",
            metrics=source,
            target=world.target,
            people=world.people,
            jobs=world.jobs,
        )
        assert set(seen.gates) == {
            "baseline-error-ratio",
            "baseline-p99-latency",
            "no-service-degradation",
        }
        for verdict in [*seen.gates.values(), *seen.triggers.values()]:
            assert verdict.outcome is Outcome.UNKNOWN, verdict
            assert "Prometheus unreachable" in verdict.reason, verdict
        decision = decide(PLAN, result.final, seen, tick)
        assert decision.transitions == ()
        assert decision.status.state is StepState.SOAKING
        # 2.1's alert gate now reads a 24h window, which 3 minutes in effect do not cover yet.
        assert (
            "no-service-degradation: its 1d window is not yet covered by this step"
            in decision.blockers
        ), decision.blockers
        # replay() over the outage too.
        replayed = replay(
            PLAN, source, start=at, end=at + timedelta(minutes=2), tick=timedelta(minutes=1)
        )
        assert replayed.final.step == "2.1" and replayed.final.state is StepState.SOAKING

        server.start()  # same port, same TSDB
        server.wait_for('count_over_time(up{job="stage-app"}[5s])', lambda n: n >= 3, timeout=30)
        back = now()
        again = verdicts(source, checks, back)
        assert again["canary-error-rate"].outcome is Outcome.PASS, again["canary-error-rate"]
        assert again["error-rate-above-5pct"].outcome is Outcome.PASS
        alerts = source.firing_alerts(["StageValidationHighErrorRate"], back)
        assert (alerts.firing, alerts.error) == (frozenset(), None)


# --- a Prometheus that never answers ----------------------------------------------------


class Blackhole:
    """A loopback TCP server that accepts connections and never answers on them."""

    def __init__(self) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind(("127.0.0.1", 0))
        self._socket.listen(64)
        self._held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._socket.getsockname()[1]}"

    @property
    def accepted(self) -> int:
        return len(self._held)

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self._socket.accept()
            except OSError:
                return
            self._held.append(connection)

    def close(self) -> None:
        # shutdown() wakes the thread blocked in accept(); close() alone does not.
        with contextlib.suppress(OSError):
            self._socket.shutdown(socket.SHUT_RDWR)
        self._socket.close()
        self._thread.join(5)
        for connection in self._held:
            connection.close()


@pytest.fixture
def blackhole() -> Iterator[Blackhole]:
    hole = Blackhole()
    yield hole
    hole.close()


def test_a_prometheus_that_never_answers_gives_an_error_within_bounded_time(
    blackhole: Blackhole,
) -> None:
    source = source_for(blackhole.url, timeout="1s", retries=0)
    at = now()
    started = time.monotonic()
    summary = source.summarize("error_ratio", QUERIES["error_ratio"], SHORT, at)
    elapsed = time.monotonic() - started
    assert 0.9 <= elapsed < 5, elapsed
    assert summary.error is not None and "did not answer within the query timeout" in summary.error
    assert blackhole.accepted >= 1  # the connection was made; the answer never came
    verdict = verdicts(source, [gate_check("canary-error-rate")], at)["canary-error-rate"]
    assert verdict.outcome is Outcome.UNKNOWN and verdict.reason == summary.error

    started = time.monotonic()
    alerts = source.firing_alerts(["StageValidationHighErrorRate"], at)
    assert time.monotonic() - started < 5
    assert (
        alerts.firing is None
        and alerts.error is not None
        and "did not answer within the query timeout" in alerts.error
    )

    # A tick's windows are read concurrently: three timeouts cost about one.
    started = time.monotonic()
    source.prefetch(
        [
            WindowRequest(QUERIES[name], SHORT)
            for name in ("error_ratio", "p99_latency_seconds", "unknown_stage_ratio")
        ],
        at,
    )
    assert time.monotonic() - started < 3
    cached = source.summarize("p99", QUERIES["p99_latency_seconds"], SHORT, at)
    assert cached.error is not None and "did not answer within the query timeout" in cached.error


def test_plan_validate_against_a_silent_prometheus_exits_2_within_its_timeout(
    blackhole: Blackhole,
) -> None:
    started = time.monotonic()
    result = CliRunner().invoke(
        stagectl_app,
        [
            "plan",
            "validate",
            "stage-validation-v3",
            "--prometheus",
            blackhole.url,
            "--query-timeout",
            "1s",
        ],
    )
    assert time.monotonic() - started < 5
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert result.stderr.startswith(f"stagectl: --prometheus {blackhole.url}: ")
    assert "did not answer within the query timeout" in result.stderr
    assert result.stderr.count("stagectl:") == 1


def test_a_read_timeout_is_reported_as_a_timeout_not_as_unreachable(
    blackhole: Blackhole,
) -> None:
    """The server accepted the connection: it is reachable, it is slow.

    `_guarded` has a branch for exactly this ("did not answer within the query
    timeout"), but the error arrives as a requests ConnectionError wrapping
    urllib3's MaxRetryError(ReadTimeoutError) and is reported as unreachable.
    """
    source = source_for(blackhole.url, timeout="1s", retries=0)
    summary = source.summarize("error_ratio", QUERIES["error_ratio"], SHORT, now())
    assert summary.error is not None
    assert "unreachable" not in summary.error, summary.error
    assert "timeout" in summary.error, summary.error


# --- basic auth ---------------------------------------------------------------------


def bcrypt_hash(password: str) -> str:
    """A bcrypt hash from the C library's crypt(3) (libxcrypt), for Prometheus's web config."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt

    return crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16))


def test_basic_auth_from_a_password_file(prometheus_server: MakeServer, tmp_path: Path) -> None:
    web_config = tmp_path / "web.yml"
    web_config.write_text("{}\n")  # open while the fixture waits for /-/ready
    server = prometheus_server(extra_args=[f"--web.config.file={web_config}"])
    # Prometheus reads its web config at every request: from now on it wants alice.
    web_config.write_text(f"basic_auth_users:\n  alice: '{bcrypt_hash('s3cret')}'\n")
    password = tmp_path / "password"
    password.write_text("wrong\n")
    at = now()
    window = timedelta(seconds=3)

    anonymous = source_for(server.url).summarize("one", "vector(1)", window, at)
    assert anonymous.error is not None and "401" in anonymous.error

    source = source_for(server.url, basic_auth_user="alice", basic_auth_password_file=password)
    refused = source.summarize("one", "vector(1)", window, at)
    assert refused.error is not None and "401" in refused.error
    password.write_text("s3cret\n")  # the file is read again at each request
    accepted = source.summarize("one", "vector(1)", window, at)
    assert accepted.error is None, accepted.error
    assert (accepted.count, accepted.last) == (4, 1.0)
