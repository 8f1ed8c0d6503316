"""The progress bar `stagectl replay` draws while it walks days of history.

A replay of two weeks at a five-minute tick sends thousands of queries and takes
tens of seconds; a person at a terminal should see it move. The bar goes to
stderr, and only when stderr is a terminal, so that `-o json` and pipes get
exactly the document and nothing else.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING

from phases.status import RolloutStatus

if TYPE_CHECKING:
    from rich.console import Console

OnTick = Callable[[datetime, RolloutStatus], None]


@contextmanager
def replay_progress(
    start: datetime, end: datetime, console: Console | None = None
) -> Iterator[OnTick | None]:
    """An `on_tick` that advances a bar over [start, end]; None when not on a terminal."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    console = console or Console(stderr=True)
    if not console.is_terminal:
        yield None
        return
    total = (end - start).total_seconds()
    columns = (
        TextColumn("replaying"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TextColumn("{task.fields[moment]}  step {task.fields[step]} {task.fields[state]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("replay", total=total, moment="", step="-", state="")

        def advance(now: datetime, status: RolloutStatus) -> None:
            progress.update(
                task,
                completed=(now - start).total_seconds(),
                moment=now.strftime("%Y-%m-%d %H:%M"),
                step=status.step,
                state=status.state.value,
            )

        yield advance
