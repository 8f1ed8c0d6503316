"""Fuzzing plans and scenarios through the command line: exit 0 or 2, never a traceback.

Each example mutates the bundled plan or a bundled scenario (a hostile scalar, deep
nesting, bytes that are not UTF-8, a line doubled or dropped, the text cut short)
and runs `stagectl plan validate` or `stagectl simulate` on the file. Whatever the
mutation, the command ends with 0, or 2 and one message starting `stagectl:`, in
bounded time and memory. CI replays the same examples (derandomized);
STAGE_HYPOTHESIS_EXPLORE=1 explores new ones.
"""

from __future__ import annotations

import os
import resource
import time
from importlib import resources
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from controller.cli.main import app

EXPLORING = bool(os.environ.get("STAGE_HYPOTHESIS_EXPLORE"))
FUZZ = settings(
    deadline=None,
    database=None,
    derandomize=not EXPLORING,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,  # each example overwrites the one file
    ],
)
PLAN = resources.files("phases").joinpath("plans/stage-validation-v3.yaml").read_bytes()
SCENARIO = resources.files("controller.sim").joinpath("scenarios/degrade-at-50.yaml").read_bytes()
SECONDS = 20.0
MEMORY = 512 * 1024 * 1024

HOSTILE_SCALARS = [
    ".inf",
    "-.inf",
    ".nan",
    "1e400",
    "1.0e400",
    "'٣٠'",
    "٥m",
    "0s",
    "0.5s",
    "30m0.5s",
    "99999999999999d",
    "3661d",
    "null",
    "[]",
    "{}",
    "-1",
    "0",
    "''",
    "'x'",
    "~",
    "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59Z",
    "2026-01-01T00:00:00",
    "!!binary AAAA",
    "!!python/object:os.system x",
    "&a 1",
    "*nowhere",
    "x" * 5000,
    "9" * 5000,
    "'" + "é" * 300 + "'",
    '"\\x00"',
    "[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]",
]


@st.composite
def mutated(draw: st.DrawFn, original: bytes) -> bytes:
    lines = original.split(b"\n")
    where = draw(st.integers(0, len(lines) - 1))
    kind = draw(st.sampled_from(["scalar", "nest", "bytes", "double", "drop", "cut", "key"]))
    line = lines[where]
    if kind == "scalar" and b": " in line:
        head = line.split(b": ", 1)[0]
        lines[where] = head + b": " + draw(st.sampled_from(HOSTILE_SCALARS)).encode()
    elif kind == "nest":
        depth = draw(st.sampled_from([70, 500, 5000]))
        lines.insert(where, b"deep: " + b"[" * depth + b"]" * depth)
    elif kind == "bytes":
        garbage = draw(st.binary(min_size=1, max_size=8))
        cut = draw(st.integers(0, len(line)))
        lines[where] = line[:cut] + garbage + line[cut:]
    elif kind == "double":
        lines.insert(where, line)
    elif kind == "drop":
        del lines[where]
    elif kind == "cut":
        lines = lines[: where + 1]
        lines[-1] = line[: draw(st.integers(0, len(line)))]
    else:
        indent = line[: len(line) - len(line.lstrip())]
        lines.insert(
            where, indent + draw(st.sampled_from([b"extra: 1", b"? [a, b]", b"<<: *x", b"- x"]))
        )
    return b"\n".join(lines)


def assert_clean_exit(args: list[str]) -> None:
    started = time.monotonic()
    result = CliRunner().invoke(app, args)
    elapsed = time.monotonic() - started
    unexpected = result.exception if not isinstance(result.exception, SystemExit) else None
    assert unexpected is None, (type(unexpected).__name__, unexpected)
    assert result.exit_code in (0, 2), (result.exit_code, result.stderr)
    if result.exit_code == 2:
        assert result.stderr.startswith("stagectl: "), result.stderr[:300]
        assert "Traceback" not in result.stderr
        assert len(result.stderr) < 20_000, len(result.stderr)
    assert elapsed < SECONDS, elapsed
    # The process's peak so far: no example may have taken it past the bound.
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 < MEMORY


@settings(FUZZ, max_examples=300 if EXPLORING else 40)
@given(text=mutated(PLAN))
def test_a_mutated_plan_validates_or_exits_2_with_a_message(tmp_path: Path, text: bytes) -> None:
    path = tmp_path / "plan.yaml"
    path.write_bytes(text)
    assert_clean_exit(["plan", "validate", str(path)])


@settings(FUZZ, max_examples=60 if EXPLORING else 6)
@given(text=mutated(SCENARIO))
def test_a_mutated_scenario_simulates_or_exits_2_with_a_message(
    tmp_path: Path, text: bytes
) -> None:
    path = tmp_path / "scenario.yaml"
    path.write_bytes(text)
    assert_clean_exit(["simulate", "--scenario", str(path), "--output", "json"])
