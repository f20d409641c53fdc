"""Which shard may start now: a window of batches in flight and an enqueued-token budget.

Plain state the sharded parent keeps (deterministic, no I/O). A create the
gateway refused for its enqueued-token quota lowers the window to the shards
still in flight, so the refused one starts again when one of them ends; with
none in flight only time frees the quota, so it waits a back-off that doubles.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from temporalio.exceptions import FailureError

from contracts.names import QUOTA_REFUSAL_CODE


def quota_refused(exc: BaseException) -> bool:
    """A child failed because the gateway refused its batch for the enqueued-token quota."""
    cause: BaseException | None = exc
    while cause is not None:
        text = cause.message if isinstance(cause, FailureError) else str(cause)
        if QUOTA_REFUSAL_CODE in text:
            return True
        cause = getattr(cause, "cause", None) or cause.__cause__
    return False


def innermost_message(exc: BaseException) -> str:
    """The deepest cause's message: the one that says what went wrong (a 413, bad input)."""
    message, cause = str(exc), exc.__cause__
    while cause is not None:
        message = cause.message if isinstance(cause, FailureError) else str(cause)
        cause = cause.__cause__
    return message


@dataclass
class Admission:
    max_concurrent: int
    max_tokens: int | None
    quota_retry: timedelta
    quota_retry_max: timedelta
    in_flight: dict[int, int] = field(default_factory=dict)
    """Shard index -> its estimated input tokens."""
    window: int = 0
    backoff: timedelta | None = None
    retry_at: datetime | None = None
    """Set after a refusal with nothing else in flight: no shard starts before it."""

    def __post_init__(self) -> None:
        self.window = self.window or self.max_concurrent

    @property
    def waiting_for_time(self) -> bool:
        return self.retry_at is not None and not self.in_flight

    def admits(self, tokens: int) -> bool:
        if self.waiting_for_time:
            return False
        if not self.in_flight:
            return True  # one shard alone over the budget still runs, alone
        if len(self.in_flight) >= self.window:
            return False
        return self.max_tokens is None or sum(self.in_flight.values()) + tokens <= self.max_tokens

    def start(self, index: int, tokens: int) -> None:
        self.in_flight[index] = tokens

    def end(self, index: int) -> None:
        self.in_flight.pop(index, None)

    def succeeded(self) -> None:
        """A batch ran: widen the window again, one shard at a time."""
        self.window = min(self.window + 1, self.max_concurrent)
        self.backoff = None

    def refused(self, index: int, now: datetime) -> str:
        """The create of shard ``index`` (still in flight) was refused; says when it retries."""
        others = len(self.in_flight) - 1
        self.window = max(1, others)
        self.backoff = (
            self.quota_retry
            if self.backoff is None
            else min(self.backoff * 2, self.quota_retry_max)
        )
        if others:
            return f"when another shard ends (window now {self.window})"
        self.retry_at = now + self.backoff
        return f"after {self.backoff}"

    def waited(self) -> None:
        self.retry_at = None
