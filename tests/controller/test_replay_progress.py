"""`stagectl replay`'s progress bar: drawn on a terminal, absent everywhere else."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

from rich.console import Console

from controller.cli.progress import replay_progress
from phases.status import initial_status

START = datetime(2026, 11, 1, tzinfo=UTC)
END = START + timedelta(days=4)


def test_a_terminal_gets_a_bar_that_follows_the_virtual_clock() -> None:
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=140)
    status = initial_status("hash", "2.1", START)
    with replay_progress(START, END, console) as on_tick:
        assert on_tick is not None
        on_tick(START + timedelta(days=1), status)
        console.file.flush()
        assert "replaying" in screen.getvalue()
        on_tick(START + timedelta(days=3), status)
    drawn = screen.getvalue()
    assert " 75%" in drawn and "2026-11-04 00:00" in drawn and "step 2.1 applying" in drawn


def test_a_pipe_gets_no_bar() -> None:
    console = Console(file=io.StringIO(), force_terminal=False)
    with replay_progress(START, END, console) as on_tick:
        assert on_tick is None
    assert console.file.getvalue() == ""
