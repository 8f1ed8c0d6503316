"""Promotion windows: the weekdays, hours and freezes in which promotions may happen.

Outside them a rollout that is otherwise ready waits; nothing else changes.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from phases.plan import WEEKDAYS, PromotionWindow


def promotion_blocker(window: PromotionWindow | None, now: datetime) -> str | None:
    """Why a promotion may not happen at `now`, or None when it may."""
    if window is None:
        return None
    for freeze in window.freezes:
        if freeze.start <= now < freeze.end:
            why = f" ({freeze.reason})" if freeze.reason else ""
            return f"promotion freeze until {freeze.end.isoformat()}{why}"
    local = now.astimezone(ZoneInfo(window.timezone))
    weekday = WEEKDAYS[local.weekday()]
    if weekday not in window.weekdays:
        return f"outside the promotion window: {weekday} is not one of {', '.join(window.weekdays)} ({window.timezone})"
    if not window.start <= local.time() <= window.end:
        return (
            f"outside the promotion window: {local:%H:%M} is not between "
            f"{window.start:%H:%M} and {window.end:%H:%M} ({window.timezone})"
        )
    return None
