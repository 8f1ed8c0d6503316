"""Plans and scenarios by bundled name or by file path.

`stagectl plan show stage-validation-v3` and `stagectl plan show ./my-plan.yaml`
both work; an unknown name lists the ones that exist.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

# The models and parsers below are imported where they are used: the CLI imports
# this module for the bundled names in its help texts, and `stagectl --help` must
# not pay for pydantic models it never builds (the CRD models alone took 95 ms).
from controller.files import FileUnusable, read_text

if TYPE_CHECKING:
    from controller.sim.scenario import Scenario
    from phases.plan import Plan

DEFAULT_PLAN = "stage-validation-v3"
DEFAULT_SCENARIO = "happy-path"


class NotFound(LookupError):
    """A plan or scenario that is neither a file nor a bundled name."""


class Unreadable(NotFound):
    """A plan or scenario file that exists but cannot be read as a document."""


def bundled_plans() -> list[str]:
    return _names("phases", "plans")


def bundled_scenarios() -> list[str]:
    return _names("controller.sim", "scenarios")


def _names(package: str, folder: str) -> list[str]:
    root = resources.files(package).joinpath(folder)
    return sorted(
        item.name.removesuffix(".yaml") for item in root.iterdir() if item.name.endswith(".yaml")
    )


def _read(
    reference: str, package: str, folder: str, kind: str, names: list[str]
) -> tuple[str, str]:
    path = Path(reference)
    if reference.endswith((".yaml", ".yml")) or _exists(path):
        try:
            return read_text(path, f"{kind} file"), str(path)
        except FileUnusable as error:
            raise Unreadable(str(error)) from None
    if reference in names:
        item = resources.files(package).joinpath(folder, f"{reference}.yaml")
        return item.read_text(encoding="utf-8"), f"{reference} (bundled {kind})"
    shown = reference if len(reference) <= 80 else f"{reference[:80]}…"
    raise NotFound(
        f"no {kind} called {shown!r}: not a file, and the bundled {kind}s are {', '.join(names)}"
    )


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except (OSError, ValueError):  # a name too long for the file system, a NUL byte
        return False


def read_plan(reference: str = DEFAULT_PLAN) -> tuple[str, str]:
    """A plan's YAML text and the name to report it by."""
    return _read(reference, "phases", "plans", "plan", bundled_plans())


def load_plan(reference: str = DEFAULT_PLAN) -> Plan:
    """A plan from a file path or a bundled plan's name; DocumentError when invalid."""
    from phases.plan_checks import parse_plan

    text, source = read_plan(reference)
    return parse_plan(text, source=source)


def scenarios_for(plan: str = DEFAULT_PLAN) -> list[str]:
    """The bundled scenarios written for one bundled plan."""
    return [
        name for name in bundled_scenarios() if (load_scenario(name).plan or DEFAULT_PLAN) == plan
    ]


def load_scenario(reference: str = DEFAULT_SCENARIO, plan: Plan | None = None) -> Scenario:
    """A scenario from a file path or a bundled scenario's name; DocumentError when invalid.

    Given the plan it will run against, its signals are checked against the plan's.
    """
    from controller.sim.scenario import parse_scenario

    text, source = _read(reference, "controller.sim", "scenarios", "scenario", bundled_scenarios())
    known = set(plan.signals) if plan is not None else None
    environments = plan.environments if plan is not None else None
    return parse_scenario(text, source=source, known_signals=known, known_environments=environments)
