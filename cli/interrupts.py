"""Ctrl-C: the starter stops within a second, whatever it waits for, and says what keeps running.

The job never needs the starter, so stopping is always safe for the job. The
first SIGINT raises KeyboardInterrupt where the starter is (the usual unwinding:
copies removed, lines closed); if that unwinding has not ended a second later
(a query waiting on a server, an executor thread), the process ends anyway
with the same message and exit code.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from cli import hints
from cli.durations import readable
from cli.exits import EXIT_INTERRUPTED
from temporal_client import exit_process

GRACE_SECONDS = 1.0
"""How long the usual unwinding may take before the process ends regardless."""

_state: dict[str, object] = {"job": None, "said": False}
_lock = threading.Lock()


def following(workflow_id: str) -> None:
    """The job this command now waits on: the one Ctrl-C's message names."""
    _state["job"] = workflow_id


def stopped_message(elapsed: float) -> str:
    job = _state["job"]
    if isinstance(job, str):
        return (
            f"stopped following after {readable(elapsed)}; job {job} keeps running: run the same "
            f"command again to follow it, or {hints.starter('status', job)}"
        )
    return (
        f"stopped after {readable(elapsed)}; a job that had started keeps running "
        f"({hints.starter('list')} shows it)"
    )


def say_stopped(started: float) -> None:
    """Print the message once, whichever of the unwinding and the deadline comes first."""
    with _lock:
        if _state["said"]:
            return
        _state["said"] = True
    print(f"\n{stopped_message(time.monotonic() - started)}", file=sys.stderr, flush=True)


@contextmanager
def stop_within_a_second(started: float) -> Iterator[None]:
    """Ctrl-C raises KeyboardInterrupt here, and ends the process GRACE_SECONDS later at most."""

    def on_sigint(signum: int, frame: FrameType | None) -> None:
        deadline = threading.Timer(GRACE_SECONDS, _stop_now, args=(started,))
        deadline.daemon = True
        deadline.start()
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        raise KeyboardInterrupt

    if threading.current_thread() is not threading.main_thread():
        yield  # signals reach the main thread only
        return
    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _stop_now(started: float) -> None:
    say_stopped(started)
    exit_process(EXIT_INTERRUPTED)
