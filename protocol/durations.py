"""How every chattrain program writes a length of time for a person: 42s, 3m05s, 2h04m."""

from __future__ import annotations

import math

EN_UNITS = ("h", "m", "s")


def format_duration(seconds: object, units: tuple[str, str, str] = EN_UNITS, missing: str = "?") -> str:
    """3725 -> '1h02m', 65 -> '1m05s', 42 -> '42s'; `missing` when unknown, not a number, negative or
    not finite (an ETA from a feed body may be anything: the line around it still goes out).

    `units` are the hour, minute and second marks (the sidecar passes Chinese ones).
    """
    if not isinstance(seconds, (int, float)) or isinstance(seconds, bool):
        return missing
    if not math.isfinite(seconds) or seconds < 0:
        return missing
    total = int(round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    h, m, s = units
    if hours:
        return f"{hours}{h}{minutes:02d}{m}"
    return f"{minutes}{m}{secs:02d}{s}" if minutes else f"{secs}{s}"
