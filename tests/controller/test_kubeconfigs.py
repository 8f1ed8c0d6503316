"""A rollout's kubeconfig is a namespace user's text: only a server, a token and inline CA
data are kept; anything that would run a command, read the operator's files or route its
requests elsewhere is refused by name, and the token never reaches a log line."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.kube.kubeconfigs import (
    MAX_KUBECONFIG_BYTES,
    MAX_REMOTE_CLIENTS,
    RemoteClients,
    RemoteCluster,
    parse_kubeconfig,
)
from controller.kube.tenancy import Refused
from controller.redaction import redact

TOKEN = "remote-token-4f9a1c"
WHERE = "spec.environments.production.kubeconfigSecret shop/prod key kubeconfig"


def kubeconfig(
    cluster: dict[str, Any] | None = None, user: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "prod",
        "contexts": [{"name": "prod", "context": {"cluster": "c", "user": "u"}}],
        "clusters": [{"name": "c", "cluster": cluster or {"server": "https://prod.example:6443"}}],
        "users": [{"name": "u", "user": user if user is not None else {"token": TOKEN}}],
    }


def encoded(document: Any) -> str:
    text = document if isinstance(document, str) else yaml.safe_dump(document)
    return base64.b64encode(text.encode()).decode()


def refusal(document: Any) -> str:
    with pytest.raises(Refused) as caught:
        parse_kubeconfig(encoded(document), WHERE)
    assert caught.value.reason == "KubeconfigRefused"
    assert caught.value.message.startswith(WHERE)
    assert TOKEN not in caught.value.message
    return caught.value.message


def test_server_token_and_ca_data_are_kept() -> None:
    ca = base64.b64encode(b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    cluster = parse_kubeconfig(
        encoded(
            kubeconfig(
                {"server": "https://prod.example:6443", "certificate-authority-data": ca.decode()}
            )
        ),
        WHERE,
    )
    assert (cluster.server, cluster.token, cluster.insecure) == (
        "https://prod.example:6443",
        TOKEN,
        False,
    )
    assert cluster.ca_data is not None and "BEGIN CERTIFICATE" in cluster.ca_data
    assert TOKEN not in repr(cluster)


def test_the_token_is_redacted_from_logs_once_read() -> None:
    parse_kubeconfig(encoded(kubeconfig()), WHERE)
    assert TOKEN not in redact(f"GET /api failed for {TOKEN}")


def test_an_exec_plugin_is_refused_and_never_run(tmp_path: Path) -> None:
    planted = tmp_path / "ran"
    user = {
        "exec": {
            "apiVersion": "client.authentication.k8s.io/v1",
            "command": "touch",
            "args": [str(planted)],
        }
    }
    assert "run a command" in refusal(kubeconfig(user=user))
    assert not planted.exists()


@pytest.mark.parametrize(
    ("section", "key", "value", "why"),
    [
        ("user", "auth-provider", {"name": "gcp"}, "authentication plugin"),
        (
            "user",
            "tokenFile",
            "/var/run/secrets/kubernetes.io/serviceaccount/token",
            "file on the operator's disk",
        ),
        ("user", "client-certificate", "/etc/operator/tls.crt", "file on the operator's disk"),
        ("user", "client-key", "/etc/operator/tls.key", "file on the operator's disk"),
        (
            "cluster",
            "certificate-authority",
            "/etc/ssl/private/ca.pem",
            "file on the operator's disk",
        ),
        ("cluster", "proxy-url", "http://attacker.example:3128", "proxy"),
        ("user", "as", "system:admin", "impersonation"),
        ("user", "client-certificate-data", "QUJD", "not supported"),
    ],
)
def test_plugins_files_proxies_and_impersonation_are_refused_by_name(
    section: str, key: str, value: Any, why: str
) -> None:
    cluster = {"server": "https://prod.example:6443"}
    user: dict[str, Any] = {"token": TOKEN}
    (cluster if section == "cluster" else user)[key] = value
    message = refusal(kubeconfig(cluster, user))
    assert repr(key) in message and why in message
    assert str(value) not in message


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ("{unclosed", "not a YAML kubeconfig"),
        ("- a list", "expected a mapping"),
        ({"contexts": []}, "no contexts"),
        (kubeconfig({"server": "file:///etc/passwd"}), "http(s) URL"),
        (kubeconfig({"server": "https://h/x?q=1"}), "http(s) URL"),
        (kubeconfig(user={}), "user.token is missing"),
        (kubeconfig(user={"token": "a\nb"}), "spans lines"),
        (kubeconfig({"server": "https://h", "insecure-skip-tls-verify": "yes"}), "true or false"),
        (
            kubeconfig({"server": "https://h", "certificate-authority-data": "bm90IGEgY2VydA=="}),
            "no certificate",
        ),
        ({**kubeconfig(), "current-context": "elsewhere"}, "no entry the context names"),
    ],
)
def test_malformed_kubeconfigs_are_refused_with_one_line(document: Any, expected: str) -> None:
    message = refusal(document)
    assert expected in message and "\n" not in message


def test_an_oversized_value_is_refused_before_it_is_decoded() -> None:
    huge = base64.b64encode(b"x" * (MAX_KUBECONFIG_BYTES + 1)).decode()
    with pytest.raises(Refused, match="larger than 64 KiB"):
        parse_kubeconfig(huge, WHERE)


def test_a_value_that_is_not_base64_is_refused() -> None:
    with pytest.raises(Refused, match="not base64"):
        parse_kubeconfig("%%%not base64%%%", WHERE)


def test_one_client_per_cluster_setting_and_rotated_ones_are_dropped() -> None:
    clients = RemoteClients()
    first = RemoteCluster("https://prod.example:6443", TOKEN)
    assert clients.api(first) is clients.api(RemoteCluster("https://prod.example:6443", TOKEN))
    for n in range(MAX_REMOTE_CLIENTS):
        clients.api(RemoteCluster("https://prod.example:6443", f"rotated-token-{n:04d}"))
    assert len(clients._clients) == MAX_REMOTE_CLIENTS
    assert first.fingerprint not in clients._clients
