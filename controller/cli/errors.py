"""The one way `stagectl` ends on bad input: a sentence on stderr and exit status 2."""

from __future__ import annotations

from typing import NoReturn

import typer


def fail(message: str) -> NoReturn:
    """Print one clear message on stderr and exit with status 2 (bad input)."""
    typer.echo(f"stagectl: {message}", err=True)
    raise typer.Exit(2)
