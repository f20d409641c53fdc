"""Durations as people type them (24h, 30m, 1h30m, 90s, 7d) and read them (2.3 s, 1 min 0 s)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

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


_CRON_DESCRIPTORS = frozenset(
    {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
)
_CRON_FIELD = re.compile(r"[0-9A-Za-z*?/,#-]+")
_CRON_NUMBER = re.compile(r"\d+")
_CRON_RANGES = (
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day of month", 1, 31),
    ("month", 1, 12),
    ("day of week", 0, 7),
)


def check_cron(text: str) -> None:
    """Refuse here what Temporal would refuse, with the field at fault and an example."""
    example = "e.g. '0 3 * * *' (03:00 every day) or '*/15 * * * *'"
    cleaned = text.strip()
    if cleaned.startswith("@"):
        if cleaned.lower() in _CRON_DESCRIPTORS or re.fullmatch(r"@every \S+", cleaned):
            return
        raise UsageError(
            f"--cron {text!r}: unknown shorthand; use {', '.join(sorted(_CRON_DESCRIPTORS))}"
        )
    fields = cleaned.split()
    if not 5 <= len(fields) <= 7:
        raise UsageError(
            f"--cron {text!r}: {len(fields)} field(s); a cron expression has 5 (minute hour "
            f"day-of-month month day-of-week), {example}"
        )
    for field in fields:
        if not _CRON_FIELD.fullmatch(field):
            raise UsageError(f"--cron {text!r}: field {field!r} is not a cron field, {example}")
    if len(fields) == 5:
        for field, (name, low, high) in zip(fields, _CRON_RANGES, strict=True):
            for number in _CRON_NUMBER.findall(field):
                if "/" not in field and not low <= int(number) <= high:
                    raise UsageError(
                        f"--cron {text!r}: {name} {number} is out of range {low}-{high}, {example}"
                    )


def format_every(every: timedelta) -> str:
    """The shortest spelling parse_every reads back, in whole seconds."""
    seconds = int(every.total_seconds())
    text = ""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            text += f"{seconds // size}{unit}"
            seconds %= size
    return text or "0s"


def readable(seconds: float) -> str:
    """A span as people read it: 0.4 s, 2.3 s, 42 s, 1 min 0 s, 2 h 5 min, 1 d 3 h."""
    if seconds < 10:
        return f"{max(seconds, 0.0):.1f} s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60} s"
    if whole < 86400:
        return f"{whole // 3600} h {whole % 3600 // 60} min"
    return f"{whole // 86400} d {whole % 86400 // 3600} h"


def took(started: datetime, finished: datetime) -> str:
    """A job's run time as its summary prints it."""
    return readable((finished - started).total_seconds())
