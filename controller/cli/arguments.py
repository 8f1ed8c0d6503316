"""Command-line arguments checked at the edge, before any work starts.

A command-line argument is trusted with nothing: each check here ends the command
with exit status 2 and one line naming the option and what is wrong, so that no
bad value reaches a library function as a traceback, and no value makes a
command run without end (a tick too small for its window, a year-1 start).
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

from controller.cli.errors import fail
from controller.files import SMALL_FILE_BYTES, FileUnusable, read_text

__all__ = [
    "checked_moment",
    "duration_option",
    "readable_file",
    "tick_count",
    "writable_directory",
    "writable_file",
]


def _short(text: str) -> str:
    """`phases.numbers.short`, imported when a message needs it (it brings pydantic)."""
    from phases.numbers import short as excerpt

    return excerpt(text)


def duration_option(
    option: str,
    text: str,
    *,
    at_least: timedelta = timedelta(seconds=1),
    at_most: timedelta | None = None,
) -> timedelta:
    """A duration option such as `--tick 5m`, within [at_least, at_most]."""
    # Imported here: the duration types pull in pydantic, which `--help` does not need.
    from phases.durations import format_duration, parse_duration

    try:
        value = parse_duration(text)
    except ValueError as error:
        fail(f"{option} {_short(text)}: {error}")
    if value < at_least:
        fail(f"{option} {_short(text)}: must be at least {format_duration(at_least)}")
    if at_most is not None and value > at_most:
        fail(f"{option} {_short(text)}: must be at most {format_duration(at_most)}")
    return value


def checked_moment(option: str, text: str, moment: datetime) -> datetime:
    """A time option inside the years the controller can reason about (1970 to 2200)."""
    from controller.sim.scenario import EARLIEST_START, LATEST_START

    if not EARLIEST_START <= moment.astimezone(UTC) <= LATEST_START:
        fail(
            f"{option} {_short(text)}: must lie between {EARLIEST_START:%Y-%m-%d} and "
            f"{LATEST_START:%Y-%m-%d}"
        )
    return moment


def tick_count(option: str, start: datetime, end: datetime, tick: timedelta) -> int:
    """How many ticks [start, end] makes at `tick`; refused up front past MAX_TICKS."""
    from controller.sim.scenario import MAX_TICKS
    from phases.durations import format_duration

    count = int((end - start) / tick)
    if count > MAX_TICKS:
        fail(
            f"{option} {format_duration(tick)}: {format_duration(end - start)} at this tick "
            f"would be {count} ticks, more than the {MAX_TICKS} allowed; use a longer tick"
        )
    return count


def readable_file(option: str, path: Path, *, limit: int = SMALL_FILE_BYTES) -> str:
    """The text of a file given on the command line (token, CA bundle, sinks, kubeconfig)."""
    try:
        return read_text(path, option, limit=limit)
    except FileUnusable as error:
        fail(str(error))


def writable_file(option: str, path: Path) -> Path:
    """A file the command will write: its directory exists and may be written."""
    if path.is_dir():
        fail(f"{option} {_short(str(path))} is a directory, not a file")
    writable_directory(option, path.parent if str(path.parent) else Path("."), create=False)
    return path


def writable_directory(option: str, path: Path, *, create: bool = True) -> Path:
    """A directory the command will write into, created when allowed and absent."""
    shown = _short(str(path))
    try:
        if create and not path.exists():
            path.mkdir(parents=True)
    except OSError as error:
        fail(f"{option} {shown} cannot be created: {error.strerror or error}")
    if not path.is_dir():
        fail(f"{option} {shown} is not a directory")
    if not os.access(path, os.W_OK | os.X_OK):
        fail(f"{option} {shown} cannot be written: permission denied")
    return path
