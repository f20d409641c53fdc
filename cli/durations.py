"""Durations as people type them on the command line: 24h, 30m, 1h30m, 90s, 7d."""

from __future__ import annotations

import re
from datetime import timedelta

from cli.exits import UsageError

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)([dhms])")
_DURATION_UNITS = {"d": "days", "h": "hours", "m": "minutes", "s": "seconds"}


def parse_every(text: str) -> timedelta:
    """'24h', '30m', '1h30m', '90s', '7d' as a timedelta."""
    cleaned = text.strip().lower()
    parts = _DURATION_PART.findall(cleaned)
    if not parts or "".join(n + u for n, u in parts) != cleaned:
        raise UsageError(f"--every {text!r}: expected a duration such as 24h, 30m, 1h30m or 90s")
    every = timedelta()
    for number, unit in parts:
        every += timedelta(**{_DURATION_UNITS[unit]: float(number)})
    if every < timedelta(seconds=1):
        raise UsageError(f"--every {text!r}: at least 1s")
    return every


def format_every(every: timedelta) -> str:
    """The shortest spelling parse_every reads back, in whole seconds."""
    seconds = int(every.total_seconds())
    text = ""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            text += f"{seconds // size}{unit}"
            seconds %= size
    return text or "0s"
