"""Measuring processes over a window, and the side-by-side table of bench.waiting_jobs."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from statistics import mean
from typing import TYPE_CHECKING

import psutil

from bench.emulator_common import MB

if TYPE_CHECKING:
    from bench.waiting_jobs import DesignRun

RSS_GOAL_MB = 1000.0


@dataclass
class Window:
    """Mean RSS and CPU (% of one core) of each process over one window."""

    seconds: float = 0.0
    rss_mb: dict[str, float] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)
    load: tuple[float, float, float] = (0.0, 0.0, 0.0)


def measure(procs: dict[str, psutil.Process], seconds: float) -> Window:
    """CPU from process times over the window, so a slow sampling loop cannot skew it."""
    start_times = {name: sum(p.cpu_times()[:2]) for name, p in procs.items()}
    rss: dict[str, list[int]] = {name: [] for name in procs}
    began = time.monotonic()
    while time.monotonic() - began < seconds:
        for name, p in procs.items():
            rss[name].append(p.memory_info().rss)
        time.sleep(1.0)
    elapsed = time.monotonic() - began
    load = os.getloadavg()
    window = Window(seconds=elapsed, load=(round(load[0], 1), round(load[1], 1), round(load[2], 1)))
    for name, p in procs.items():
        window.cpu[name] = (sum(p.cpu_times()[:2]) - start_times[name]) / elapsed * 100
        window.rss_mb[name] = sum(rss[name]) / len(rss[name]) / MB
    return window


class PeakWatch:
    """The worker's peak RSS over the whole run, sampled in a thread."""

    def __init__(self, proc: psutil.Process) -> None:
        self.proc = proc
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            try:
                self.peak = max(self.peak, self.proc.memory_info().rss)
            except psutil.Error:
                return

    def stop(self) -> float:
        """The peak in MB."""
        self._stop.set()
        self._thread.join(timeout=5)
        return self.peak / MB


def _rows(poll_seconds: float) -> list[tuple[str, Callable[[DesignRun], float], str]]:
    def per_hour(r: DesignRun) -> float:
        return r.calls / max(1, r.waiting) / (r.busy.seconds / 3600)

    def per_job_kb(r: DesignRun) -> float:
        return (r.busy.rss_mb["worker"] - r.idle.rss_mb["worker"]) * 1000 / max(1, r.waiting)

    return [
        ("jobs waiting", lambda r: r.waiting, "{:.0f}"),
        ("set-up: batches created (s)", lambda r: r.batches_seconds, "{:.0f}"),
        ("set-up: jobs started to all waiting (s)", lambda r: r.ramp_seconds, "{:.0f}"),
        ("worker RSS idle (MB)", lambda r: r.idle.rss_mb["worker"], "{:.1f}"),
        ("worker RSS, all waiting (MB)", lambda r: r.busy.rss_mb["worker"], "{:.1f}"),
        ("  per waiting job (KB)", per_job_kb, "{:.1f}"),
        ("worker RSS peak, whole run (MB)", lambda r: r.peak_mb, "{:.1f}"),
        ("worker CPU waiting (% of a core)", lambda r: r.busy.cpu["worker"], "{:.2f}"),
        ("server CPU idle (% of a core)", lambda r: r.idle.cpu["server"], "{:.2f}"),
        ("server CPU waiting (% of a core)", lambda r: r.busy.cpu["server"], "{:.2f}"),
        ("server RSS waiting (MB)", lambda r: r.busy.rss_mb["server"], "{:.1f}"),
        ("emulator CPU idle (% of a core)", lambda r: r.idle.cpu["emulator"], "{:.2f}"),
        ("emulator CPU waiting (% of a core)", lambda r: r.busy.cpu["emulator"], "{:.2f}"),
        ("gateway calls in the window", lambda r: r.calls, "{:.0f}"),
        (f"gateway calls a job an hour ({poll_seconds:g} s poll)", per_hour, "{:.1f}"),
        ("history events a job, window start", lambda r: mean(r.events[0] or [0]), "{:.1f}"),
        ("history events a job, window end", lambda r: mean(r.events[1] or [0]), "{:.1f}"),
        ("pending wait: highest attempt (sample)", lambda r: max(r.attempts or [0]), "{:.0f}"),
        ("pending wait: showing a failure (sample)", lambda r: r.failures_shown, "{:.0f}"),
        ("load average, window end (1 min)", lambda r: r.busy.load[0], "{:.1f}"),
    ]


def side_by_side(runs: list[DesignRun], poll_seconds: float) -> bool:
    """Print one column per design (and first / second when two); True if every goal holds."""
    heads = [r.design for r in runs] + (
        [f"{runs[0].design}/{runs[1].design}"] if len(runs) == 2 else []
    )
    print()
    print(f"{'':<44}" + "".join(f"{h:>16}" for h in heads))
    for label, value, form in _rows(poll_seconds):
        values = [value(r) for r in runs]
        cells = [form.format(v) for v in values]
        if len(runs) == 2:
            cells.append(f"{values[0] / values[1]:.2f}x" if values[1] else "-")
        print(f"{label:<44}" + "".join(f"{c:>16}" for c in cells))
    print(f"load average (1, 5, 15 min) at each window end: {[r.busy.load for r in runs]}")
    ok = True
    for r in runs:
        for passed, what in (
            (r.waiting == r.jobs, f"every job waited ({r.waiting}/{r.jobs})"),
            (r.peak_mb < RSS_GOAL_MB, f"worker peak RSS {r.peak_mb:.0f} MB < {RSS_GOAL_MB:.0f} MB"),
            (r.events[0] == r.events[1], "waiting a poll interval added no history events"),
        ):
            print(("PASS  " if passed else "FAIL  ") + f"{r.design}: {what}")
            ok = ok and passed
        if r.design == "watch":
            healthy = r.failures_shown == 0 and max(r.attempts or [1]) == 1
            print(
                ("PASS  " if healthy else "FAIL  ")
                + "watch: a waiting job shows attempt 1 and no failure"
            )
            ok = ok and healthy
    return ok
