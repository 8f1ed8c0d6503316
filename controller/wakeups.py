"""One-shot ticks at the moment a rollout's decision can change, on top of the regular pass.

After each reconcile the operator hands the decision's wake-up moment
(`phases.wakeups.next_wakeup`) to `WakeUps.plan`, which keeps one pending
APScheduler date job per rollout: a newer decision moves it (it saw more),
a decision with no moment removes it. The job calls the operator's `tick_now`.

The tick runs `margin` after the moment: the comparisons that flip there are
strict, and the sample that completes the evidence must be in Prometheus. When
a trigger's window turned bad somewhere between two samples of the last read,
the first wake-up can come before the evidence is complete; that tick reads again
and finds the next moment, so the rollout is ticked every `margin` until the
evidence is complete, which bounds the latency by `margin` plus the tick itself.
Set the margin to the scrape interval: a query's value changes only with a scrape.

Wake-ups are planned from inside scheduler jobs (a tick plans the next one), and
APScheduler 3.11's `shutdown(wait=True)` holds its job-store lock while it waits
for running jobs: a job that then adds, moves or removes a job waits for that lock
forever, and so does the shutdown. `stop_scheduling` closes the wake-ups first.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Protocol

from apscheduler.jobstores.base import JobLookupError
from apscheduler.triggers.date import DateTrigger

DEFAULT_MARGIN = timedelta(seconds=5)


class Scheduler(Protocol):
    """The methods of an APScheduler scheduler that wake-ups and `stop_scheduling` use."""

    def add_job(self, func: Callable[..., Any], trigger: Any = ..., **options: Any) -> Any: ...

    def remove_job(self, job_id: str, jobstore: str | None = None) -> None: ...

    def reschedule_job(
        self, job_id: str, jobstore: str | None = None, trigger: Any = ..., **trigger_args: Any
    ) -> Any: ...

    def shutdown(self, wait: bool = True) -> None: ...


class WakeUps:
    """Keeps, for each rollout, one pending tick at its next wake-up moment.

    Each wake-up is a job of its own id: a wake-up planned while the last one of the
    same rollout still runs must not count as a second instance of it (APScheduler
    would skip it).
    """

    def __init__(
        self,
        scheduler: Scheduler,
        tick: Callable[[str, str], object],
        *,
        margin: timedelta = DEFAULT_MARGIN,
    ) -> None:
        self._scheduler = scheduler
        self._tick = tick
        self.margin = margin
        self._jobs: dict[tuple[str, str], tuple[datetime, str]] = {}
        self._lock = threading.Lock()
        self._sequence = itertools.count()
        self._scheduling = threading.Lock()
        """Held around each call into the scheduler, so that `close` waits for the last."""
        self._closed = False

    @property
    def planned(self) -> dict[tuple[str, str], datetime]:
        """The pending wake-up of each rollout (for tests and logs)."""
        with self._lock:
            return {key: run_at for key, (run_at, _job) in self._jobs.items()}

    def plan(self, namespace: str, name: str, moment: datetime | None, now: datetime) -> None:
        """Tick the rollout `margin` after `moment` (at the earliest `margin` after `now`)."""
        if moment is None:
            self.cancel(namespace, name)
            return
        key = (namespace, name)
        run_at = max(moment, now) + self.margin
        with self._lock:
            pending = self._jobs.get(key)
            if pending is not None and pending[0] == run_at:
                return
            if pending is not None:
                self._jobs[key] = (run_at, pending[1])
        if pending is not None and self._moved(pending[1], run_at):
            return
        with self._lock:
            job_id = f"wake:{namespace}/{name}:{next(self._sequence)}"
            self._jobs[key] = (run_at, job_id)
        with self._scheduling:
            if self._closed:
                return
            self._scheduler.add_job(
                self._run,
                DateTrigger(run_date=run_at),
                args=(namespace, name, job_id),
                id=job_id,
                misfire_grace_time=None,
            )

    def close(self) -> None:
        """Plan, move and remove nothing from now on; returns once no call is under way."""
        with self._scheduling:
            self._closed = True

    def cancel(self, namespace: str, name: str) -> None:
        with self._lock:
            pending = self._jobs.pop((namespace, name), None)
        if pending is not None:
            self._remove(pending[1])

    def _moved(self, job_id: str, run_at: datetime) -> bool:
        """Move a pending job to `run_at`; False when it already ran or is running.

        Cheaper than removing it and adding another (APScheduler inspects the callable's
        signature on each new job), which every pass would do for rollouts whose moment
        moves with `now`. A job the scheduler takes just as it is moved still runs, and
        its tick plans the next wake-up."""
        with self._scheduling:
            if self._closed:
                return True
            try:
                self._scheduler.reschedule_job(job_id, trigger=DateTrigger(run_date=run_at))
            except JobLookupError:
                return False
            return True

    def _remove(self, job_id: str) -> None:
        with self._scheduling, contextlib.suppress(JobLookupError):  # it ran, or runs
            if not self._closed:
                self._scheduler.remove_job(job_id)

    def _run(self, namespace: str, name: str, job_id: str) -> None:
        with self._lock:
            if self._jobs.get((namespace, name), (None, ""))[1] == job_id:
                del self._jobs[(namespace, name)]
        self._tick(namespace, name)


def stop_scheduling(scheduler: Scheduler, wakeups: WakeUps) -> None:
    """Shut the scheduler down once its running jobs end, wake-ups closed first (see above)."""
    wakeups.close()
    scheduler.shutdown(wait=True)
