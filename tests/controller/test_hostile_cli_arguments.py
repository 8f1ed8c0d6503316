"""Every bad command-line argument ends with exit 2 and one line naming it.

README: "Bad input of any kind ends with exit status 2 and one message". Each case
here crashed with a traceback or hung before issue 9 (reproduced first), or was
reported as something it was not (a directory as "does not exist", a zero query
timeout as "not JSON").
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from controller.cli.main import app

UNREACHABLE = "http://127.0.0.1:9"


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    not_utf8 = tmp_path / "latin1.yaml"
    not_utf8.write_bytes(b"name: caf\xe9\n")
    folder = tmp_path / "folder"
    folder.mkdir()
    big = tmp_path / "big.yaml"
    big.write_bytes(b"# " + b"x" * (2 * 1024 * 1024))
    return {"not_utf8": not_utf8, "folder": folder, "big": big, "tmp": tmp_path}


REPLAY = ["replay", "--prometheus", UNREACHABLE]
CASES: dict[str, tuple[list[str], str]] = {
    "tick-below-a-second": (
        [*REPLAY, "--start", "now-1h", "--tick", "0.001s"],
        "--tick '0.001s': duration '0.001s' is not a whole number of seconds",
    ),
    "tick-zero": (
        [*REPLAY, "--start", "now-1h", "--tick", "0s"],
        "--tick '0s': must be at least 1s",
    ),
    "too-many-ticks": (
        [*REPLAY, "--start", "now-3650d", "--tick", "1s"],
        "more than the 200000 allowed; use a longer tick",
    ),
    "start-in-year-1": (
        [*REPLAY, "--start", "0001-01-01T00:00:00Z"],
        "--start '0001-01-01T00:00:00Z': must lie between 1970-01-01 and 2200-01-01",
    ),
    "huge-relative-start": (
        [*REPLAY, "--start", "now-99999999999999d"],
        "--start 'now-99999999999999d'",
    ),
    "query-timeout-zero": (
        [*REPLAY, "--start", "now-1h", "--query-timeout", "0s"],
        "--query-timeout '0s': must be at least 1s",
    ),
    "query-timeout-huge": (
        [*REPLAY, "--start", "now-1h", "--query-timeout", "3000d"],
        "--query-timeout '3000d': must be at most 10m",
    ),
    "malformed-url": (
        ["replay", "--prometheus", "http://[::1", "--start", "now-1h"],
        "is not a usable URL",
    ),
    "over-long-host": (
        ["plan", "validate", "stage-validation-v3", "--prometheus", "http://" + "h" * 300],
        "the host name is too long",
    ),
    "missing-token-file": (
        [*REPLAY, "--start", "now-1h", "--bearer-token-file", "/nonexistent/token"],
        "--bearer-token-file /nonexistent/token does not exist",
    ),
    "missing-ca-file": (
        [*REPLAY, "--start", "now-1h", "--ca-file", "/nonexistent/ca.pem"],
        "--ca-file /nonexistent/ca.pem does not exist",
    ),
    "plan-is-a-directory": (
        ["plan", "validate", "{folder}"],
        "plan file {folder} is a directory, not a file",
    ),
    "plan-not-utf8": (["plan", "validate", "{not_utf8}"], "is not UTF-8 text: byte 9 (0xe9)"),
    "plan-too-big": (["plan", "validate", "{big}"], "is larger than 1 MiB"),
    "scenario-is-a-directory": (
        ["simulate", "--scenario", "{folder}"],
        "is a directory, not a file",
    ),
    "over-long-plan-name": (["plan", "show", "p" * 5000], "no plan called"),
    "plot-in-a-missing-directory": (
        ["simulate", "--plot", "/nonexistent/dir/run.png"],
        "--plot '/nonexistent/dir' is not a directory",
    ),
    "crd-directory-cannot-be-made": (
        ["crd", "generate", "-d", "/proc/no-such/crds"],
        "--output-dir '/proc/no-such/crds' cannot be created",
    ),
    "crd-directory-is-a-file": (["crd", "generate", "-d", "{not_utf8}"], "is not a directory"),
    "kubeconfig-not-utf8": (
        ["status", "--kubeconfig", "{not_utf8}"],
        "no cluster reachable: kubeconfig {not_utf8} is not UTF-8 text",
    ),
    "kubeconfig-is-a-directory": (
        ["status", "--kubeconfig", "{folder}"],
        "is a directory, not a file",
    ),
    "sinks-not-utf8": (
        ["run", "--notifications", "{not_utf8}", "--kubeconfig", "{folder}"],
        "--notifications {not_utf8} is not UTF-8 text",
    ),
    "sinks-too-big": (
        ["run", "--notifications", "{big}", "--kubeconfig", "{folder}"],
        "is larger than 64 KiB",
    ),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_a_bad_argument_exits_2_with_one_line_naming_it(case: str, files: dict[str, Path]) -> None:
    args, expected = CASES[case]
    args = [arg.format(**files) for arg in args]
    expected = expected.format(**files)
    started = time.monotonic()
    result = CliRunner().invoke(app, args)
    assert time.monotonic() - started < 10
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == 2, (result.exit_code, result.stdout[:300], result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("stagectl: "), lines
    assert expected in lines[0], lines[0]
    assert len(lines[0]) < 400, len(lines[0])
