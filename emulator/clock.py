"""Emulated time, so a 24-hour completion window can pass in seconds.

Emulated time runs ``time_scale`` times faster than the wall clock. Changing the
scale at run time re-anchors the clock, so emulated time never jumps. The clock
starts equal to the wall clock the first time a data directory is used and is
anchored in SQLite, so a restart continues it: the time the emulator was down
counts, as it would for a remote service whose clock never stopped.

Timestamps shown to clients (``created_at``, ``expires_at`` ...) are wall-clock
epoch seconds, so a client comparing them with its own clock sees the truth;
``expires_at`` is the wall time at which the window ends at the scale in force
when the batch was created.
"""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Anchor:
    emulated: float
    wall: float
    scale: float


class EmulatedClock:
    def __init__(self, anchor: Anchor) -> None:
        self._anchor = anchor

    @classmethod
    def starting_now(cls, scale: float) -> EmulatedClock:
        now = time.time()
        return cls(Anchor(emulated=now, wall=now, scale=scale))

    @property
    def anchor(self) -> Anchor:
        return self._anchor

    @property
    def scale(self) -> float:
        return self._anchor.scale

    def now(self) -> float:
        a = self._anchor
        return a.emulated + (time.time() - a.wall) * a.scale

    def rescale(self, scale: float) -> Anchor:
        """Keep emulated time continuous while changing its speed."""
        now_wall = time.time()
        emulated = self._anchor.emulated + (now_wall - self._anchor.wall) * self._anchor.scale
        self._anchor = Anchor(emulated=emulated, wall=now_wall, scale=scale)
        return self._anchor

    def real_seconds(self, emulated_seconds: float) -> float:
        return emulated_seconds / self._anchor.scale


def wall_now() -> int:
    return int(time.time())
