"""List-and-watch caches, so that a steady pass reads nothing from the API server.

An `Informer` lists one kind in one scope, then watches it from the list's
resourceVersion and keeps a copy of every object. A watch that ends is resumed
from the last resourceVersion seen; a 410 Gone (the history moved past it) or a
periodic resync re-lists, and the difference between the old copy and the new
list is delivered as ADDED, MODIFIED and DELETED events, so nothing that happened
while the watch was down is missed. The first list delivers no events: it is what
a pass reads, not news.

`CachingApi` is a `KubeApi` whose `get` and `list` are answered from informers
of the same identity (the operator's own, or an impersonated ServiceAccount's)
and whose writes put the object the API server answered into the cache at once,
so that the next tick sees its own write. The operator's informers (rollouts,
records, admission policies) use the operator's rights. A rollout's target
(ConfigMaps, Deployments, Jobs) is cached per namespace *as the rollout's
ServiceAccount*, and only when the API server says that account may list and
watch that kind there; otherwise its reads stay direct GETs as that account. A
cache never lets the operator see an object its account could not read itself.

Objects are kept without `metadata.managedFields`, and Deployments with only what
a tick reads (replicas, template metadata, rollout counters, the Progressing
condition); objects
handed out are shared with the cache: callers must not mutate them. Their strings
are interned (`compact`): every rollout's status repeats the same keys, queries,
reasons and step names, and JSON decoding gives each response its own copies.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from controller.kube.api import Kind, KubeApi, KubeError

log = logging.getLogger("stage_rollout.caches")
Key = tuple[str, str]
EventHandler = Callable[[Kind, str, Mapping[str, Any]], None]
RESYNC_SECONDS = 600.0
"""A full re-list this often, whatever the watch said (a safety net, not the pass)."""
WATCH_SECONDS = 300
PERMISSION_RECHECK_SECONDS = 300.0
"""How long a tenant kind found unwatchable stays on direct reads before asking again."""


def slim(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    """An object as cached: without managedFields (often its largest part, never read)."""
    metadata = obj.get("metadata") or {}
    if "managedFields" not in metadata:
        return obj
    return {**obj, "metadata": {k: v for k, v in metadata.items() if k != "managedFields"}}


_DEPLOYMENT_STATUS = ("observedGeneration", "replicas", "updatedReplicas", "availableReplicas")


def slim_deployment(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    """A Deployment as a rollout's tick reads it (`target.rollout_state`): its replicas,
    its pod template's metadata, its rollout counters and Progressing condition; not the
    pod spec, selector or strategy (at 10,000 rollouts each kilobyte kept is 10 MB)."""
    spec = obj.get("spec") or {}
    template = spec.get("template") or {}
    kept: dict[str, Any] = {"template": {"metadata": template.get("metadata") or {}}}
    if "replicas" in spec:
        kept["replicas"] = spec["replicas"]
    slimmed = {**slim(obj), "spec": kept}
    status = obj.get("status")
    if isinstance(status, Mapping):
        counters = {k: status[k] for k in _DEPLOYMENT_STATUS if k in status}
        conditions = status.get("conditions")
        if isinstance(conditions, list):
            counters["conditions"] = [
                c for c in conditions if isinstance(c, Mapping) and c.get("type") == "Progressing"
            ]
        slimmed["status"] = counters
    return slimmed


def compact(value: Any) -> Any:
    """`value` rebuilt with every string (keys and values) interned: equal, and shared.

    Of a cached rollout's memory most is strings that all rollouts hold alike (status
    keys, gate queries, reasons); interned, they are held once, and the parsed models
    made from the cached object share them too."""
    if isinstance(value, str):
        return sys.intern(value)
    if isinstance(value, dict):
        return {(sys.intern(k) if isinstance(k, str) else k): compact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [compact(item) for item in value]
    return value


SLIMMERS: dict[str, Callable[[Mapping[str, Any]], Mapping[str, Any]]] = {
    "deployments": slim_deployment
}


def _key(obj: Mapping[str, Any]) -> Key:
    metadata = obj.get("metadata") or {}
    return str(metadata.get("namespace", "")), str(metadata.get("name", ""))


def _version(obj: Mapping[str, Any] | None) -> int:
    try:
        return int(((obj or {}).get("metadata") or {}).get("resourceVersion", 0))
    except (TypeError, ValueError):
        return 0


class Informer:
    """One kind in one scope (a namespace, or all), listed once and kept by a watch."""

    def __init__(
        self,
        api: KubeApi,
        kind: Kind,
        namespace: str | None,
        *,
        on_event: EventHandler | None = None,
        index: Callable[[Mapping[str, Any]], str | None] | None = None,
        resync_seconds: float = RESYNC_SECONDS,
        watch_seconds: int = WATCH_SECONDS,
    ) -> None:
        self.api = api
        self._watch_api = api.detached()
        self.kind = kind
        self.namespace = namespace
        self._on_event = on_event
        self._index_of = index
        self._slim = SLIMMERS.get(kind.plural, slim)
        self._resync = resync_seconds
        self._watch_seconds = watch_seconds
        self._lock = threading.Lock()
        self._store: dict[Key, Mapping[str, Any]] = {}
        self._index: dict[str, dict[Key, Mapping[str, Any]]] = {}
        self._stamps: dict[str, int] = {}
        self._stamp = 0
        self.examined = 0
        """Objects handed out by `indexed`: what passes looked at (tests count it)."""
        self.resource_version = ""
        self.synced = threading.Event()
        self.failing: str | None = None
        self.lists = 0
        self._listed_at = 0.0
        self._thread: threading.Thread | None = None

    # reading --------------------------------------------------------------------

    def get(self, namespace: str, name: str) -> Mapping[str, Any] | None:
        with self._lock:
            return self._store.get((namespace, name))

    def items(self, namespace: str | None = None) -> list[Mapping[str, Any]]:
        with self._lock:
            if namespace is None:
                return list(self._store.values())
            return [o for (ns, _n), o in self._store.items() if ns == namespace]

    def indexed(self, key: str) -> list[Mapping[str, Any]]:
        """The objects whose index key is `key` (e.g. the records of one rollout)."""
        return self.indexed_at(key)[1]

    def indexed_at(self, key: str) -> tuple[int, list[Mapping[str, Any]]]:
        """`indexed(key)` and the stamp of that bucket as handed out."""
        with self._lock:
            found = list(self._index.get(key, {}).values())
            self.examined += len(found)
            return self._stamps.get(key, 0), found

    def stamp(self, key: str) -> int:
        """A number that changes whenever the objects under index key `key` change (and is
        never reused for another content): what a result computed from them is valid for.
        0 is an empty bucket."""
        with self._lock:
            return self._stamps.get(key, 0)

    def covers(self, namespace: str | None) -> bool:
        return self.synced.is_set() and (self.namespace is None or self.namespace == namespace)

    # keeping --------------------------------------------------------------------

    def put(self, obj: Mapping[str, Any]) -> None:
        """An object the operator just wrote: kept unless the cache already has a newer one."""
        if not obj.get("metadata"):
            return
        with self._lock:
            current = self._store.get(_key(obj))
            if current is not None and _version(current) > _version(obj):
                return
            self._keep(obj)

    def forget(self, namespace: str, name: str) -> None:
        with self._lock:
            self._drop((namespace, name))

    def _keep(self, obj: Mapping[str, Any]) -> None:
        obj = compact(self._slim(obj))
        key = _key(obj)
        self._drop(key)
        self._store[key] = obj
        if self._index_of is not None and (index := self._index_of(obj)) is not None:
            self._index.setdefault(index, {})[key] = obj
            self._restamp(index)

    def _restamp(self, index: str) -> None:
        self._stamp += 1
        if index in self._index:
            self._stamps[index] = self._stamp
        else:
            self._stamps.pop(index, None)

    def _drop(self, key: Key) -> None:
        old = self._store.pop(key, None)
        if old is not None and self._index_of is not None:
            index = self._index_of(old)
            bucket = self._index.get(index or "")
            if bucket is not None:
                bucket.pop(key, None)
                if not bucket:
                    self._index.pop(index or "", None)
                self._restamp(index or "")

    def _forget_all(self) -> None:
        with self._lock:
            self.synced.clear()
            self._store, self._index, self._stamps = {}, {}, {}

    def relist(self) -> list[tuple[str, Mapping[str, Any]]]:
        """List again; the changes against the cache as (event type, object)."""
        items, version = self.api.list(self.kind, self.namespace)
        changes: list[tuple[str, Mapping[str, Any]]] = []
        with self._lock:
            old = self._store
            self._store, self._index, self._stamps = {}, {}, {}
            for item in items:
                self._keep(item)
                before = old.pop(_key(item), None)
                if before is None:
                    changes.append(("ADDED", item))
                elif _version(before) != _version(item):
                    changes.append(("MODIFIED", item))
            changes += [("DELETED", gone) for gone in old.values()]
            self.resource_version = version
        self.lists += 1
        self._listed_at = time.monotonic()
        first = not self.synced.is_set()
        self.synced.set()
        self.failing = None
        return [] if first else changes

    def apply(self, event_type: str, obj: Mapping[str, Any]) -> bool:
        """One watch event into the cache; True when it is news for the handler."""
        version = str((obj.get("metadata") or {}).get("resourceVersion", ""))
        with self._lock:
            if version:
                self.resource_version = version
            if event_type in ("ADDED", "MODIFIED"):
                current = self._store.get(_key(obj))
                if current is None or _version(current) <= _version(obj):
                    self._keep(obj)  # not older than what the operator itself just wrote
            elif event_type == "DELETED":
                self._drop(_key(obj))
            else:
                return False
        return True

    def sync(self) -> None:
        """List now if never listed (the first pass's read), in the caller's thread."""
        if not self.synced.is_set():
            self.relist()

    # running --------------------------------------------------------------------

    def start(self, stop: threading.Event) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self.run,
                args=(stop,),
                name=f"cache-{self.kind.plural}-{self.namespace or 'all'}",
                daemon=True,
            )
            self._thread.start()

    def run(self, stop: threading.Event) -> None:
        """List, then watch until stopped; resume, re-list on 410 or resync, back off on errors."""
        backoff = 1.0
        while not stop.is_set():
            try:
                if not self.synced.is_set() or time.monotonic() - self._listed_at >= self._resync:
                    self._deliver(self.relist())
                self._watch(stop)
                backoff = 1.0
            except KubeError as error:
                if error.status == 410:
                    self._listed_at = 0.0  # too old: re-list, and deliver what changed
                    continue
                if error.status in (401, 403) and self.api.impersonating:
                    # The account lost the right: what it was shown is not kept, and its
                    # reads go back to direct GETs (refused too, if it lost those).
                    self.failing = str(error)
                    self._forget_all()
                    return
                self.failing = str(error)
                self._listed_at = 0.0  # what was missed meanwhile comes with the re-list
                log.warning("watch of %s interrupted: %s", self.kind.plural, error)
                stop.wait(backoff)
                backoff = min(backoff * 2, 30.0)

    def _watch(self, stop: threading.Event) -> None:
        remaining = self._resync - (time.monotonic() - self._listed_at)
        seconds = max(1, min(self._watch_seconds, int(remaining)))
        for event_type, obj in self._watch_api.watch(
            self.kind, self.namespace, self.resource_version, timeout_seconds=seconds
        ):
            if stop.is_set():
                return
            if self.apply(event_type, obj):
                self._deliver([(event_type, obj)])
            self.failing = None

    def _deliver(self, changes: Iterable[tuple[str, Mapping[str, Any]]]) -> None:
        if self._on_event is None:
            return
        for event_type, obj in changes:
            try:
                self._on_event(self.kind, event_type, obj)
            except Exception as error:  # a handler's bug must not stop the cache
                log.warning("cache handler failed: %s", type(error).__name__)


class Caches:
    """Every informer of one operator, by (identity, kind, namespace)."""

    def __init__(self, stop: threading.Event, *, resync_seconds: float = RESYNC_SECONDS) -> None:
        self.stop = stop
        self.resync_seconds = resync_seconds
        self._lock = threading.Lock()
        self._informers: dict[tuple[str, str, str | None], Informer] = {}
        self._refused: dict[tuple[str, str, str], float] = {}
        self._starting: dict[tuple[str, str, str], threading.Lock] = {}
        self.tenant_kinds: frozenset[str] = frozenset()

    def add(self, informer: Informer) -> Informer:
        identity = informer.api.impersonating or ""
        with self._lock:
            self._informers[(identity, informer.kind.plural, informer.namespace)] = informer
        return informer

    def informers(self) -> list[Informer]:
        with self._lock:
            return list(self._informers.values())

    def find(self, identity: str, kind: Kind, namespace: str | None) -> Informer | None:
        """A synced informer of this identity that covers `namespace` for `kind`."""
        with self._lock:
            exact = self._informers.get((identity, kind.plural, namespace))
            wide = self._informers.get((identity, kind.plural, None))
        for informer in (exact, wide):
            if informer is not None and informer.covers(namespace):
                return informer
        return None

    def tenant_informer(self, api: KubeApi, kind: Kind, namespace: str) -> Informer | None:
        """The impersonated account's cache of `kind` in its namespace, started on first use
        when that account may list and watch it there; None means read directly."""
        identity = api.impersonating or ""
        if kind.plural not in self.tenant_kinds or not identity:
            return None
        found = self.find(identity, kind, namespace)
        if found is not None:
            return found
        with self._lock:
            starting = self._starting.setdefault(
                (identity, kind.plural, namespace), threading.Lock()
            )
        with starting:  # one list per cache, however many ticks ask at once
            return self.find(identity, kind, namespace) or self._start_tenant(
                api, identity, kind, namespace
            )

    def _start_tenant(
        self, api: KubeApi, identity: str, kind: Kind, namespace: str
    ) -> Informer | None:
        refused_at = self._refused.get((identity, kind.plural, namespace))
        if refused_at is not None and time.monotonic() - refused_at < PERMISSION_RECHECK_SECONDS:
            return None
        plain = KubeApi(api._client, timeout_seconds=api._timeout, impersonate=identity)
        try:
            allowed = plain.may("list", kind, namespace) and plain.may("watch", kind, namespace)
            if not allowed:
                self._refused[(identity, kind.plural, namespace)] = time.monotonic()
                return None
            informer = Informer(plain, kind, namespace, resync_seconds=self.resync_seconds)
            informer.sync()
        except KubeError:
            self._refused[(identity, kind.plural, namespace)] = time.monotonic()
            return None
        self.add(informer).start(self.stop)
        return informer

    def lists(self) -> int:
        return sum(i.lists for i in self.informers())


def _simple_selector(selector: str | None) -> dict[str, str] | None:
    """`a=b,c=d` as a dict; None for anything else (answered by the API server)."""
    if not selector:
        return {}
    wanted: dict[str, str] = {}
    for part in selector.split(","):
        key, sep, value = part.partition("=")
        if not sep or not key or any(c in part for c in "!<> ()"):
            return None
        wanted[key.strip()] = value.strip().lstrip("=")
    return wanted


class CachingApi(KubeApi):
    """A KubeApi whose reads come from the caches of its identity where one is synced."""

    def __init__(self, api: KubeApi, caches: Caches) -> None:
        super().__init__(api._client, timeout_seconds=api._timeout, impersonate=api.impersonating)
        self.caches = caches

    def as_service_account(self, namespace: str, name: str) -> KubeApi:
        return CachingApi(super().as_service_account(namespace, name), self.caches)

    def _informer(self, kind: Kind, namespace: str | None) -> Informer | None:
        identity = self.impersonating or ""
        found = self.caches.find(identity, kind, namespace)
        if found is None and identity and namespace:
            found = self.caches.tenant_informer(self, kind, namespace)
        return found

    def get(self, kind: Kind, namespace: str, name: str) -> dict[str, Any] | None:
        informer = self._informer(kind, namespace)
        if informer is None:
            return super().get(kind, namespace, name)
        found = informer.get(namespace, name)
        return dict(found) if found is not None else None

    def get_fresh(self, kind: Kind, namespace: str, name: str) -> dict[str, Any] | None:
        found = super().get(kind, namespace, name)
        informer = self._informer(kind, namespace)
        if informer is not None:
            if found is None:
                informer.forget(namespace, name)
            else:
                informer.put(found)
        return found

    def list(
        self, kind: Kind, namespace: str | None, label_selector: str | None = None
    ) -> tuple[list[dict[str, Any]], str]:
        wanted = _simple_selector(label_selector)
        informer = self._informer(kind, namespace) if wanted is not None else None
        if informer is None or wanted is None:
            return super().list(kind, namespace, label_selector)
        items = [
            dict(item)
            for item in informer.items(namespace)
            if all(
                ((item.get("metadata") or {}).get("labels") or {}).get(k) == v
                for k, v in wanted.items()
            )
        ]
        return items, informer.resource_version

    def _kept(self, kind: Kind, namespace: str | None, obj: dict[str, Any]) -> dict[str, Any]:
        informer = self._informer(kind, namespace)
        if informer is not None and obj:
            informer.put(obj)
        return obj

    def create(self, kind: Kind, namespace: str, body: Mapping[str, Any]) -> dict[str, Any]:
        return self._kept(kind, namespace, super().create(kind, namespace, body))

    def merge_patch(
        self, kind: Kind, namespace: str, name: str, patch: Mapping[str, Any]
    ) -> dict[str, Any]:
        return self._kept(kind, namespace, super().merge_patch(kind, namespace, name, patch))

    def replace(
        self, kind: Kind, namespace: str, name: str, body: Mapping[str, Any]
    ) -> dict[str, Any]:
        return self._kept(kind, namespace, super().replace(kind, namespace, name, body))

    def replace_status(
        self, kind: Kind, namespace: str, name: str, body: Mapping[str, Any]
    ) -> dict[str, Any]:
        return self._kept(kind, namespace, super().replace_status(kind, namespace, name, body))

    def delete(self, kind: Kind, namespace: str, name: str) -> None:
        super().delete(kind, namespace, name)
        informer = self._informer(kind, namespace)
        if informer is not None:
            informer.forget(namespace, name)
