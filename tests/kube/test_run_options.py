"""`stagectl run`'s tenancy options on bad input: exit 2, one line naming what is wrong.

Every case fails before the operator connects to a cluster, so nothing is started.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from controller.cli.main import app
from controller.kube.prometheus_refs import load_endpoints

runner = CliRunner()


def run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, ["run", "--kubeconfig", "/nonexistent", *args])
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize(
    ("text", "phrase"),
    [
        (
            "team-a: {url: 'file:///etc/passwd'}",
            "endpoint team-a: (settings): 'file:///etc/passwd' is not an http(s) URL",
        ),
        (
            "team-a: {url: 'http://p:9090', tokenFile: /t}",
            "endpoint team-a: tokenFile: Extra inputs are not permitted",
        ),
        ("Team_A: {url: 'http://p:9090'}", "endpoint name 'Team_A' is not a DNS label"),
        ("[a, b]", "expected a mapping of endpoint names to settings"),
        ("team-a: {url: [", "not YAML"),
    ],
)
def test_a_bad_endpoints_file_is_one_line_naming_the_endpoint_and_field(
    tmp_path: Path, text: str, phrase: str
) -> None:
    path = tmp_path / "endpoints.yaml"
    path.write_text(text, encoding="utf-8")
    code, out, err = run("--prometheus-endpoints", str(path))
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("stagectl: --prometheus-endpoints ")
    assert phrase in err and "Traceback" not in err


def test_a_missing_endpoints_file_says_so(tmp_path: Path) -> None:
    code, _out, err = run("--prometheus-endpoints", str(tmp_path / "none.yaml"))
    assert code == 2 and "none.yaml does not exist" in err


LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{name}: &{name} [{', '.join([f'*{before}'] * 10)}]\n"
    for before, name in zip("abcde", "bcdef", strict=True)
)


@pytest.mark.parametrize(
    ("content", "phrase"),
    [
        ("a: " + "[" * 200 + "]" * 200, "nested deeper than 64 levels"),
        ("team-a: {url: 'http://p:9090'}\nteam-a: {url: 'http://q:9090'}\n", "appears twice"),
        (LAUGHS, "its aliases expand to more than 200000 values"),
        (b"team-a: {url: '\xff'}", "is not UTF-8 text: byte 15"),
        ("#" * (1024 * 1024 + 1), "is larger than 1 MiB"),
        (None, "is a directory, not a file"),
    ],
)
def test_a_hostile_endpoints_file_is_refused_in_one_line(
    tmp_path: Path, content: str | bytes | None, phrase: str
) -> None:
    path = tmp_path / "endpoints.yaml"
    if content is None:
        path.mkdir()
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    code, out, err = run("--prometheus-endpoints", str(path))
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("stagectl: --prometheus-endpoints ")
    assert phrase in err and "Traceback" not in err


@pytest.mark.parametrize("name", ["../kube-system", "System:Admin", "a b"])
def test_a_default_service_account_must_be_a_name(name: str) -> None:
    code, _out, err = run("--default-service-account", name)
    assert code == 2 and f"--default-service-account {name!r} is not a ServiceAccount name" in err


def test_an_endpoints_file_gives_named_settings_with_the_admins_files(tmp_path: Path) -> None:
    path = tmp_path / "endpoints.yaml"
    path.write_text(
        "team-a: {url: 'https://prom.team-a:9090', bearerTokenFile: /var/run/token, timeout: 5s}\n"
        "shared: {url: 'http://prom:9090', basicAuthUser: u, basicAuthPasswordFile: /p}\n",
        encoding="utf-8",
    )
    endpoints = load_endpoints(path)
    assert sorted(endpoints) == ["shared", "team-a"]
    assert str(endpoints["team-a"].bearer_token_file) == "/var/run/token"
    assert endpoints["team-a"].timeout.total_seconds() == 5
    assert endpoints["shared"].basic_auth_user == "u"


@pytest.mark.parametrize(
    ("args", "phrase"),
    [
        (["--wakeup-margin", "soon"], "--wakeup-margin 'soon': invalid duration"),
        (["--wakeup-margin", "1h"], "--wakeup-margin must be at most 10m"),
        (
            ["--alertmanager-webhook-port", "70000"],
            "--alertmanager-webhook-port 70000 is not a port",
        ),
        (
            ["--alertmanager-webhook-port", "8080"],
            "--alertmanager-webhook-port must differ from --metrics-port",
        ),
        (
            ["--alertmanager-webhook-token-file", "/t"],
            "--alertmanager-webhook-token-file needs --alertmanager-webhook-port",
        ),
        (
            ["--alertmanager-webhook-port", "9094", "--alertmanager-webhook-token-file", "/none"],
            "--alertmanager-webhook-token-file: token file /none",
        ),
    ],
)
def test_bad_wake_up_and_webhook_options_are_one_line(args: list[str], phrase: str) -> None:
    code, out, err = run(*args)
    assert code == 2 and out == "" and err.count("\n") == 1
    assert phrase in err and "Traceback" not in err
