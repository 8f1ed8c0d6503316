"""Kubeconfigs written by namespace users, for environments that live in another cluster.

A kubeconfig can make its reader run a command (`exec` and `auth-provider`
plugins), read files (`certificate-authority`, `client-certificate`,
`client-key`, `tokenFile`) or send its requests elsewhere (`proxy-url`). The
official loader honours all of that, so it never sees a rollout's kubeconfig:
this module reads the one context the file selects and keeps only the server
URL, an inline CA bundle, `insecure-skip-tls-verify` and a bearer token. Any
other key is refused by name, before anything is connected to; the token is
registered with the log redaction at once and never quoted in an error.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml
from kubernetes import client

from controller.kube.api import KubeApi
from controller.kube.tenancy import Refused
from controller.redaction import remember_secret

MAX_KUBECONFIG_BYTES = 64 * 1024
"""A kubeconfig for one cluster is a few KiB; a bigger Secret value is refused unread."""
MAX_REMOTE_CLIENTS = 256
"""Distinct remote settings kept connected; beyond, the oldest client is dropped."""
_SERVER = re.compile(r"^https?://[^\s/?#]+(/[^\s?#]*)?$")
_CLUSTER_KEYS = frozenset({"server", "certificate-authority-data", "insecure-skip-tls-verify"})
_USER_KEYS = frozenset({"token"})
_WHY_REFUSED = {
    "exec": "would make the operator run a command",
    "auth-provider": "would make the operator run an authentication plugin",
    "tokenFile": "names a file on the operator's disk",
    "client-certificate": "names a file on the operator's disk",
    "client-key": "names a file on the operator's disk",
    "certificate-authority": "names a file on the operator's disk",
    "proxy-url": "would send the operator's requests through a proxy of its choosing",
    "as": "asks for impersonation",
    "as-groups": "asks for impersonation",
    "as-uid": "asks for impersonation",
    "as-user-extra": "asks for impersonation",
}
REASON = "KubeconfigRefused"


@dataclass(frozen=True)
class RemoteCluster:
    """What the operator keeps of a kubeconfig: where the cluster is and the token to use."""

    server: str
    token: str = field(repr=False)
    ca_data: str | None = field(default=None, repr=False)
    insecure: bool = False

    @property
    def fingerprint(self) -> str:
        """A digest of the settings, to share one client between identical kubeconfigs."""
        text = "\0".join((self.server, self.token, self.ca_data or "", str(self.insecure)))
        return hashlib.sha256(text.encode()).hexdigest()


def parse_kubeconfig(raw_value: Any, where: str) -> RemoteCluster:
    """A Secret's base64 value as a RemoteCluster; Refused naming what is wrong (never its values)."""
    text = _decoded(raw_value, where)
    try:
        document = yaml.safe_load(text)
    except (yaml.YAMLError, RecursionError, ValueError):
        raise Refused(REASON, f"{where}: not a YAML kubeconfig") from None
    if not isinstance(document, dict):
        raise Refused(REASON, f"{where}: not a kubeconfig (expected a mapping)")
    context = _context(document, where)
    cluster = _named(document, "clusters", "cluster", _text(context.get("cluster")), where)
    user = _named(document, "users", "user", _text(context.get("user")), where)
    _only(cluster, _CLUSTER_KEYS, f"{where}: cluster")
    _only(user, _USER_KEYS, f"{where}: user")
    server = _text(cluster.get("server"))
    if len(server) > 2048 or _SERVER.fullmatch(server) is None:
        raise Refused(REASON, f"{where}: cluster.server must be an http(s) URL")
    token = _text(user.get("token"))
    if not token or len(token) > 16 * 1024 or any(c in token for c in "\r\n\0 "):
        raise Refused(REASON, f"{where}: user.token is missing, too long or spans lines")
    remember_secret(token)
    ca = cluster.get("certificate-authority-data")
    insecure = cluster.get("insecure-skip-tls-verify", False)
    if not isinstance(insecure, bool):
        raise Refused(REASON, f"{where}: cluster.insecure-skip-tls-verify must be true or false")
    return RemoteCluster(server, token, _ca(ca, where) if ca is not None else None, insecure)


def _decoded(raw_value: Any, where: str) -> str:
    value = str(raw_value)
    too_big = Refused(REASON, f"{where}: larger than {MAX_KUBECONFIG_BYTES // 1024} KiB")
    if len(value) > (MAX_KUBECONFIG_BYTES * 4) // 3 + 4:
        raise too_big
    try:
        raw = base64.b64decode(value, validate=True)
        if len(raw) > MAX_KUBECONFIG_BYTES:
            raise too_big
        return raw.decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise Refused(REASON, f"{where}: not base64 UTF-8 text") from None


def _context(document: Mapping[str, Any], where: str) -> Mapping[str, Any]:
    contexts = document.get("contexts")
    if not isinstance(contexts, list) or not contexts:
        raise Refused(REASON, f"{where}: no contexts")
    wanted = document.get("current-context")
    if wanted is None and len(contexts) != 1:
        raise Refused(REASON, f"{where}: several contexts and no current-context")
    found = _named(document, "contexts", "context", _text(wanted), where) if wanted else None
    if found is None:
        only = contexts[0]
        found = only.get("context") if isinstance(only, dict) else None
    if not isinstance(found, dict):
        raise Refused(REASON, f"{where}: the context is not a mapping")
    return found


def _named(
    document: Mapping[str, Any], section: str, body: str, name: str, where: str
) -> Mapping[str, Any]:
    entries = document.get(section)
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, dict) and entry.get("name") == name:
            found = entry.get(body)
            if isinstance(found, dict):
                return found
    raise Refused(REASON, f"{where}: {section} has no entry the context names")


def _only(section: Mapping[str, Any], allowed: frozenset[str], where: str) -> None:
    for key in section:
        if key in allowed:
            continue
        why = _WHY_REFUSED.get(str(key), "is not supported (give server, a token, CA data)")
        raise Refused(REASON, f"{where}.{str(key)[:40]!r} refused: it {why}")


def _ca(value: Any, where: str) -> str:
    try:
        text = base64.b64decode(str(value), validate=True).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise Refused(REASON, f"{where}: certificate-authority-data is not base64 PEM") from None
    if "-----BEGIN CERTIFICATE-----" not in text:
        raise Refused(REASON, f"{where}: certificate-authority-data holds no certificate")
    return text


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


class RemoteClients:
    """One API client per distinct remote cluster setting, shared by every tick."""

    def __init__(self, timeout_seconds: float = 10.0) -> None:
        self._timeout = timeout_seconds
        self._clients: dict[str, KubeApi] = {}
        self._lock = threading.Lock()

    def api(self, cluster: RemoteCluster) -> KubeApi:
        with self._lock:
            found = self._clients.get(cluster.fingerprint)
            if found is None:
                configuration = client.Configuration(host=cluster.server.rstrip("/"))
                configuration.api_key = {"authorization": f"Bearer {cluster.token}"}
                configuration.ca_cert_data = cluster.ca_data
                configuration.verify_ssl = not cluster.insecure
                found = KubeApi(client.ApiClient(configuration), timeout_seconds=self._timeout)
                if len(self._clients) >= MAX_REMOTE_CLIENTS:
                    # Rotated kubeconfigs leave clients nobody uses: drop the oldest.
                    self._clients.pop(next(iter(self._clients)))
                self._clients[cluster.fingerprint] = found
            return found
