"""WakeUps keeps one APScheduler job per rollout and moves it rather than adding another."""

from __future__ import annotations

import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from apscheduler.schedulers.background import BackgroundScheduler

from controller.wakeups import WakeUps


def test_a_moved_wake_up_is_the_same_job_at_the_new_moment_and_runs_once() -> None:
    scheduler = BackgroundScheduler(timezone=UTC)
    ticked: list[tuple[str, str]] = []
    done = threading.Event()

    def tick(namespace: str, name: str) -> None:
        ticked.append((namespace, name))
        done.set()

    wakeups = WakeUps(scheduler, tick, margin=timedelta(0))
    now = datetime.now(UTC)
    wakeups.plan("shop", "a", now + timedelta(hours=1), now)
    [first] = scheduler.get_jobs()
    wakeups.plan("shop", "a", now + timedelta(hours=2), now)
    [moved] = scheduler.get_jobs()
    assert moved.id == first.id
    assert moved.next_run_time == now + timedelta(hours=2)
    assert wakeups.planned == {("shop", "a"): now + timedelta(hours=2)}
    scheduler.start()
    try:
        soon = datetime.now(UTC) + timedelta(milliseconds=200)
        wakeups.plan("shop", "a", soon, datetime.now(UTC))  # moved earlier, on a running scheduler
        assert done.wait(5)
        assert ticked == [("shop", "a")]
        assert wakeups.planned == {}
        assert scheduler.get_jobs() == []
        later = datetime.now(UTC) + timedelta(hours=1)
        wakeups.plan("shop", "a", later, datetime.now(UTC))  # it ran: a new job of a new id
        [again] = scheduler.get_jobs()
        assert again.id != first.id and again.next_run_time == later
    finally:
        scheduler.shutdown(wait=False)


STOP_WHILE_A_TICK_PLANS = """
import sys, threading, time
from datetime import UTC, datetime, timedelta
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import STATE_STOPPED
from controller.wakeups import WakeUps, stop_scheduling

scheduler = BackgroundScheduler(executors={"default": ThreadPoolExecutor(2)}, timezone=UTC)
wakeups = WakeUps(scheduler, lambda namespace, name: None, margin=timedelta(0))
now = datetime.now(UTC)
if sys.argv[1] != "add":
    wakeups.plan("shop", "a", now + timedelta(hours=1), now)
running = threading.Event()

def tick() -> None:
    running.set()
    while scheduler.state != STATE_STOPPED:
        time.sleep(0.01)
    # The shutdown has begun; wait until it holds the job-store lock while it waits for
    # this job (APScheduler 3.11), which is when a wake-up's call would wait forever.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and scheduler._jobstores_lock.acquire(blocking=False):
        scheduler._jobstores_lock.release()
        time.sleep(0.01)
    now = datetime.now(UTC)
    if sys.argv[1] == "cancel":
        wakeups.cancel("shop", "a")
    else:
        wakeups.plan("shop", "a", now + timedelta(hours=2), now)

scheduler.add_job(tick, next_run_time=now)
scheduler.start()
assert running.wait(5)
stop_scheduling(scheduler, wakeups)
print("stopped")
"""


@pytest.mark.parametrize("call", ["add", "move", "cancel"])
def test_the_scheduler_stops_while_a_running_tick_plans_its_next_wake_up(
    call: str, tmp_path: Path
) -> None:
    """A tick plans the next wake-up at its end; stopping the operator just then must
    not hang it (APScheduler's shutdown holds its job-store lock while it waits)."""
    script = tmp_path / "stop.py"
    script.write_text(STOP_WHILE_A_TICK_PLANS)
    try:
        done = subprocess.run(
            [sys.executable, str(script), call], capture_output=True, text=True, timeout=20
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"the scheduler did not stop within 20 s while a tick's wake-up {call} ran")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "stopped"
