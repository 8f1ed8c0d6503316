"""Which Prometheus a rollout reads, and with whose credentials.

Endpoints (URL, CA bundle, token file, basic auth) are the cluster admin's: the
operator is started with them by name (`stagectl run --prometheus-endpoints`,
`--prometheus-url` for the default). A rollout names one of them, or gives an
http(s) URL whose credentials come from a Secret of its own namespace, read
through the tenant's impersonated connection. No rollout can make the operator
read a file of its disk or send the operator's credentials to a URL of its
choosing. The Prometheus client itself (timeouts, answer checks) is
`controller.prometheus.source`; this module only chooses its settings.
"""

from __future__ import annotations

import base64
import binascii
import threading
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError
from pydantic.alias_generators import to_camel

from controller.files import FileUnusable, read_text
from controller.kube.api import SECRETS
from controller.kube.resources import BUNDLED_PLAN_NAME, PrometheusSpec
from controller.kube.tenancy import Refused, Tenant
from controller.prometheus.source import PrometheusSettings, PrometheusSource
from phases.documents import DocumentError, compose
from phases.durations import Duration
from phases.needs import AlertReading
from phases.plan import Plan
from phases.verdicts import AlertHistory, WindowSummary

DEFAULT_ENDPOINT = "default"
MAX_SECRET_VALUE = 16 * 1024


class EndpointConfig(BaseModel):
    """One named endpoint as the cluster admin writes it in the endpoints file."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    url: str = Field(min_length=1)
    timeout: Duration = timedelta(seconds=10)
    ca_file: Path | None = None
    bearer_token_file: Path | None = None
    basic_auth_user: str | None = None
    basic_auth_password_file: Path | None = None
    insecure_skip_verify: bool = False

    def settings(self) -> PrometheusSettings:
        return PrometheusSettings(**self.model_dump())


def load_endpoints(path: Path) -> dict[str, PrometheusSettings]:
    """`name: {url, timeout, caFile, bearerTokenFile, basicAuthUser, ...}` from a YAML file.

    The file goes through the one file reader (regular file, size cap, UTF-8) and the
    depth-bounded YAML composer. ValueError, in one line, names the file, the endpoint
    and the field that is wrong."""
    try:
        _root, raw = compose(read_text(path, "endpoints file"), str(path), "endpoints file")
    except FileUnusable as error:
        raise ValueError(str(error)) from None
    except DocumentError as error:
        problem = error.problems[0]
        line = f" (line {problem.line})" if problem.line is not None else ""
        raise ValueError(f"{path}: not YAML{line}: {problem.message}") from None
    if not isinstance(raw, dict) or not raw:
        raise ValueError(f"{path}: expected a mapping of endpoint names to settings")
    endpoints: dict[str, PrometheusSettings] = {}
    for name, body in raw.items():
        if not isinstance(name, str) or not _is_name(name):
            raise ValueError(f"{path}: endpoint name {name!r} is not a DNS label")
        try:
            endpoints[name] = EndpointConfig.model_validate(body).settings()
        except ValidationError as error:
            first = error.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "(settings)"
            message = str(first["msg"]).removeprefix("Value error, ")
            raise ValueError(f"{path}: endpoint {name}: {where}: {message}") from None
    return endpoints


def _is_name(name: str) -> bool:
    import re

    return re.fullmatch(BUNDLED_PLAN_NAME, name) is not None


class NoPrometheus:
    """The metrics source of a rollout with no Prometheus configured: every read is unknown."""

    REASON = (
        "no Prometheus configured: set spec.prometheus (endpoint, or url) or start the "
        "operator with --prometheus-url or --prometheus-endpoints"
    )

    def summarize(self, signal: str, query: str, window: timedelta, at: datetime) -> WindowSummary:
        return WindowSummary.failed(query, window, self.REASON)

    def firing_alerts(self, names: Sequence[str], at: datetime) -> AlertReading:
        return AlertReading(None, self.REASON)

    def alert_history(
        self, alerts: Sequence[str], coverage_query: str | None, window: timedelta, at: datetime
    ) -> AlertHistory:
        return AlertHistory.failed(at, window, self.REASON)

    def average(self, signal: str, query: str, start: datetime, end: datetime) -> float | None:
        return None

    def modes(self, query: str, at: datetime) -> tuple[float, ...] | None:
        return None


class PrometheusEndpoints:
    """The operator's named endpoints, and one shared client per distinct setting."""

    def __init__(
        self, named: Mapping[str, PrometheusSettings] | None = None, *, default: str | None = None
    ) -> None:
        self.named = dict(named or {})
        self.default = default
        self._sources: dict[PrometheusSettings, PrometheusSource] = {}
        self._lock = threading.Lock()

    def shared_settings(self, spec: PrometheusSpec | None) -> PrometheusSettings | None:
        """The settings a spec needs no Secret for (an operator endpoint, or a bare URL),
        else None; the same settings share one client, so their queries are prefetched
        once for all rollouts."""
        if spec is None:
            return self.named.get(self.default) if self.default else None
        if spec.endpoint is not None:
            return self.named.get(spec.endpoint)
        if spec.url is not None and spec.credentials_secret is None:
            try:
                return PrometheusSettings(url=spec.url, timeout=spec.timeout)
            except ValidationError:
                return None
        return None

    def settings_for(
        self, spec: PrometheusSpec | None, tenant: Tenant
    ) -> PrometheusSettings | None:
        """What the rollout reads from; None when nothing is configured. Refused when the
        spec names an endpoint the operator lacks, or its Secret is unusable."""
        if spec is None or spec.endpoint is not None:
            settings = self.shared_settings(spec)
            if settings is None and spec is not None:
                known = ", ".join(sorted(self.named)) or "none"
                raise Refused(
                    "PrometheusRefused",
                    f"spec.prometheus.endpoint {spec.endpoint!r} is not configured on the "
                    f"operator (configured: {known})",
                )
            return settings
        assert spec.url is not None
        credentials = _credentials(spec, tenant) if spec.credentials_secret else {}
        try:
            return PrometheusSettings(url=spec.url, timeout=spec.timeout, **credentials)
        except ValidationError as error:
            message = str(error.errors()[0]["msg"]).removeprefix("Value error, ")
            raise Refused("PrometheusRefused", f"spec.prometheus: {message}") from None

    def source(self, settings: PrometheusSettings, plan: Plan) -> PrometheusSource:
        with self._lock:
            found = self._sources.get(settings)
            if found is None:
                found = self._sources[settings] = PrometheusSource(
                    settings, plan.evaluation.resolution
                )
            return found

    @property
    def queries_sent(self) -> int:
        """Queries sent by every client so far (for benchmarks and metrics)."""
        with self._lock:
            return sum(source.queries_sent for source in self._sources.values())

    def close(self) -> None:
        with self._lock:
            for source in self._sources.values():
                source.close()
            self._sources.clear()


def _credentials(spec: PrometheusSpec, tenant: Tenant) -> dict[str, Any]:
    assert spec.credentials_secret is not None
    name = spec.credentials_secret.name
    where = f"spec.prometheus.credentialsSecret {tenant.namespace}/{name}"
    secret = tenant.api.get(SECRETS, tenant.namespace, name)
    if secret is None:
        raise Refused("PrometheusRefused", f"{where}: the Secret does not exist")
    data = secret.get("data") or {}
    if "token" in data:
        return {"bearer_token": SecretStr(_decoded(data["token"], where, "token"))}
    if "username" in data and "password" in data:
        return {
            "basic_auth_user": _decoded(data["username"], where, "username"),
            "basic_auth_password": SecretStr(_decoded(data["password"], where, "password")),
        }
    raise Refused(
        "PrometheusRefused", f"{where}: needs a key `token`, or keys `username` and `password`"
    )


def _decoded(value: Any, where: str, key: str) -> str:
    """A Secret value as text; its content is never quoted in an error."""
    try:
        raw = base64.b64decode(str(value), validate=True)
        text = raw.decode("utf-8").strip()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise Refused("PrometheusRefused", f"{where}: key {key} is not base64 UTF-8 text") from None
    if not text or len(text) > MAX_SECRET_VALUE or any(c in text for c in "\r\n\0"):
        raise Refused("PrometheusRefused", f"{where}: key {key} is empty, too long or spans lines")
    return text
