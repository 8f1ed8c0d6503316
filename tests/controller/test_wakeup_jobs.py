"""WakeUps keeps one APScheduler job per rollout and moves it rather than adding another."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

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
