"""Leader election on a coordination.k8s.io/v1 Lease: one writing replica at a time.

Every update of the Lease is guarded by its resourceVersion, so two replicas
racing for it cannot both win. The leader renews every `retry_period`; it counts
as leading only while its last successful renewal is younger than
`renew_deadline`, and it stops at once when it finds another holder. Followers
take over a Lease whose holder has not renewed for `lease_duration`.

A follower keeps reading the Lease every `retry_period` as well: while those reads
succeed it is ready to lead (`lease_reachable`), which is what its readiness probe
reports, so that a standby counts as a ready replica.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from controller.kube.api import LEASES, KubeApi, KubeError

log = logging.getLogger("stage_rollout.leadership")


def _micro(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse(text: str | None) -> datetime | None:
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


class LeaderElector:
    """Holds (or waits for) one Lease on behalf of one replica."""

    def __init__(
        self,
        api: KubeApi,
        namespace: str,
        name: str,
        identity: str,
        *,
        now: Callable[[], datetime],
        monotonic: Callable[[], float],
        lease_duration: timedelta = timedelta(seconds=15),
        renew_deadline: timedelta = timedelta(seconds=10),
        retry_period: timedelta = timedelta(seconds=2),
        on_change: Callable[[bool], None] | None = None,
    ) -> None:
        if not retry_period < renew_deadline < lease_duration:
            raise ValueError("leader election needs retry period < renew deadline < lease duration")
        self._api = api
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self._now = now
        self._monotonic = monotonic
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self._renewed_at: float | None = None
        self._reached_at: float | None = None
        self._lock = threading.Lock()
        self._on_change = on_change or (lambda _leading: None)
        self._was_leading = False

    def holding(self) -> bool:
        """True while this replica may write: its last renewal is younger than the deadline."""
        with self._lock:
            renewed = self._renewed_at
        return (
            renewed is not None
            and self._monotonic() - renewed < self.renew_deadline.total_seconds()
        )

    def lease_reachable(self) -> bool:
        """True while the last answer about the Lease, won or not, is younger than the deadline."""
        with self._lock:
            reached = self._reached_at
        return (
            reached is not None
            and self._monotonic() - reached < self.renew_deadline.total_seconds()
        )

    def try_acquire_or_renew(self) -> bool:
        """One attempt to take or keep the Lease; True when this replica holds it now."""
        started = self._monotonic()
        try:
            won = self._attempt()
        except KubeError as error:
            log.warning("lease %s/%s not renewed: %s", self.namespace, self.name, error)
            won = None
        with self._lock:
            if won is not None:
                self._reached_at = started
            if won is True:
                self._renewed_at = started
            elif won is False:
                self._renewed_at = None
        self._report()
        return self.holding()

    def _attempt(self) -> bool:
        now = self._now()
        lease = self._api.get(LEASES, self.namespace, self.name)
        seconds = int(self.lease_duration.total_seconds())
        if lease is None:
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace},
                "spec": {
                    "holderIdentity": self.identity,
                    "leaseDurationSeconds": seconds,
                    "acquireTime": _micro(now),
                    "renewTime": _micro(now),
                    "leaseTransitions": 0,
                },
            }
            return self._write(lambda: self._api.create(LEASES, self.namespace, body))
        spec: dict[str, Any] = dict(lease.get("spec") or {})
        holder = spec.get("holderIdentity")
        renewed = _parse(spec.get("renewTime"))
        duration = timedelta(seconds=int(spec.get("leaseDurationSeconds") or seconds))
        if (
            holder not in (None, "", self.identity)
            and renewed is not None
            and renewed + duration > now
        ):
            return False
        if holder != self.identity:
            spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + 1
            spec["acquireTime"] = _micro(now)
        spec.update(
            holderIdentity=self.identity, renewTime=_micro(now), leaseDurationSeconds=seconds
        )
        body = {**lease, "spec": spec}
        return self._write(lambda: self._api.replace(LEASES, self.namespace, self.name, body))

    def _write(self, call: Callable[[], object]) -> bool:
        try:
            call()
        except KubeError as error:
            if error.status in (409,):
                return False
            raise
        return True

    def release(self) -> None:
        """Give the Lease up on shutdown so that another replica takes over at once."""
        with self._lock:
            self._renewed_at = None
        try:
            lease = self._api.get(LEASES, self.namespace, self.name)
            if lease and (lease.get("spec") or {}).get("holderIdentity") == self.identity:
                spec = {**lease["spec"], "holderIdentity": None, "renewTime": None}
                self._api.replace(LEASES, self.namespace, self.name, {**lease, "spec": spec})
        except KubeError as error:
            log.warning("lease not released: %s", error)
        self._report()

    def run(self, stop: threading.Event) -> None:
        """Renew until `stop` is set; a lost Lease stops writes at the next `holding()`."""
        while not stop.is_set():
            self.try_acquire_or_renew()
            stop.wait(self.retry_period.total_seconds())

    def _report(self) -> None:
        leading = self.holding()
        if leading != self._was_leading:
            self._was_leading = leading
            log.info(
                "%s leadership of %s/%s",
                "acquired" if leading else "lost",
                self.namespace,
                self.name,
            )
            self._on_change(leading)
