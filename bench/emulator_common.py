"""Shared pieces of the emulator benchmarks: peak-memory sampling, timing, printing."""

from __future__ import annotations

import statistics
import threading
import time
from types import TracebackType

import psutil

MB = 1_000_000


class PeakRss:
    """Sample a process's resident memory in a thread; keep the peak."""

    def __init__(self, pid: int, interval: float = 0.005) -> None:
        self.proc = psutil.Process(pid)
        self.interval = interval
        self.start_rss = self.proc.memory_info().rss
        self.peak = self.start_rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, self.proc.memory_info().rss)
            except psutil.Error:
                return
            time.sleep(self.interval)

    @property
    def growth(self) -> int:
        return self.peak - self.start_rss

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary_ms(values: list[float]) -> str:
    p50, p99 = percentile(values, 0.5) * 1000, percentile(values, 0.99) * 1000
    mean = statistics.fmean(values) * 1000
    return f"p50 {p50:7.1f} ms  p99 {p99:7.1f} ms  mean {mean:7.1f} ms  (n={len(values)})"
