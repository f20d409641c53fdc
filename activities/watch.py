"""Watching a running batch from inside one activity attempt.

A healthy wait is one attempt that reads the batch every poll interval and
heartbeats what it saw, so the Web UI shows attempt 1, no failure, and live
counts in the heartbeat details. It returns only when the workflow has
something to act on, which is what bounds the job's history: a status
change, a step of progress, the phase's deadline or a refresh time, or a
gateway that has kept failing for a while. A status change or progress
waits until the watch has run a settle time (the request says how long), so
a batch that passes through validating, in_progress and finalizing within it
ends one watch, not three; a terminal status is reported at once. A gateway that fails retryably is
read again inside the loop. So is one that refuses to read the batch (401/403,
Kong's 404 "no Route matched", an early 404 right after a create): a key
rotating across a fleet of gateway nodes or a Kong reload passes; only once it
has refused for longer than the worker's patience (from the first refusal,
which an earlier watch of the job hands on) does the attempt fail, with
FAILURE_GATEWAY_REFUSES. Any other refusal (a 400) fails the attempt at once
with the gateway's message. A worker shutting down (a deploy)
hands the watch over by returning what it last saw, rather than failing.

On a worker the watch runs detached (asynchronous completion): the activity
hands its task token to a background task and returns its slot at once, so
10,000 waiting jobs cost 10,000 small coroutines, not 10,000 of the worker's
activity slots that uploads and downloads need. The background task
heartbeats through the client and completes, fails or reports the cancel of
the attempt itself; if its worker dies, the heartbeat timeout hands the
attempt to another worker.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from temporalio import activity
from temporalio.client import AsyncActivityCancelledError, AsyncActivityHandle
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from activities.failures import gateway_failure
from contracts.names import FAILURE_GATEWAY_REFUSES
from contracts.steps import BatchSnapshot, BatchWatch, WatchBatchRequest
from gateway.errors import AuthenticationError, GatewayError, NotFoundError
from gateway.settings import DEFAULT_REFUSAL_PATIENCE_SECONDS

# The longest pause between reads of a failing gateway, unless it asks for longer.
MAX_ERROR_BACKOFF_SECONDS = 120.0


def _now() -> datetime:
    return datetime.now(UTC)


class Watch:
    """One attempt's loop; the batch read and the clock are given, so tests can script them."""

    def __init__(
        self,
        request: WatchBatchRequest,
        read: Callable[[str], Awaitable[BatchSnapshot]],
        *,
        now: Callable[[], datetime] = _now,
        refusal_patience_seconds: float = DEFAULT_REFUSAL_PATIENCE_SECONDS,
        refused_since: datetime | None = None,
    ) -> None:
        self.request = request
        self._read = read
        self._now = now
        self._patience = refusal_patience_seconds
        self._refused_since = request.refused_since or refused_since
        self.last = BatchWatch(batch=request.batch, refused_since=self._refused_since)
        self._failing_since: datetime | None = None
        self._failures = 0
        self._started = now()
        self._read_event = asyncio.Event()

    async def next_read(self) -> None:
        """Until the next read of the batch, failed ones included."""
        await self._read_event.wait()
        self._read_event.clear()

    def _count_read(self) -> None:
        self._read_event.set()

    def details(self) -> BatchWatch:
        """What the heartbeat carries: the last batch seen and any gateway error since."""
        return self.last

    async def run(self) -> BatchWatch:
        request = self.request
        polls = 0
        while True:
            polls += 1
            try:
                batch = await self._read(request.batch.id)
            except GatewayError as exc:
                self._count_read()
                if _refuses(exc):
                    self._refused(exc)
                elif not exc.retryable:
                    raise
                if self._failed_long_enough(exc, polls) or await self._worker_leaves(
                    self._error_delay(exc)
                ):
                    return self.last
                continue
            self._count_read()
            self._failing_since, self._failures, self._refused_since = None, 0, None
            self.last = BatchWatch(batch=batch, polls=polls)
            if self._worth_reporting(batch) or await self._worker_leaves(request.poll_seconds):
                return self.last

    @staticmethod
    async def _worker_leaves(seconds: float) -> bool:
        """Sleep until the next read; True if the worker began shutting down meanwhile."""
        try:
            await asyncio.wait_for(activity.wait_for_worker_shutdown(), timeout=seconds)
        except TimeoutError:
            return False
        return True

    def _worth_reporting(self, batch: BatchSnapshot) -> bool:
        known = self.request.batch
        now = self._now()
        if batch.status.is_terminal or now >= self.request.return_by:
            return True
        step = self.request.report_every
        news = batch.status != known.status or (
            step is not None and batch.finished - known.finished >= step
        )
        # Meanwhile the heartbeat shows what was read: the Web UI and the starter see it live.
        settle = self.request.report_changes_after_seconds
        return news and (settle is None or (now - self._started).total_seconds() >= settle)

    def _failed_long_enough(self, exc: GatewayError, polls: int) -> bool:
        """Record a retryable failure; True when the workflow should hear of it now.

        A deadline that passes meanwhile waits for a read that works: the job
        never acts on a batch it could not read.
        """
        now = self._now()
        self._failures += 1
        if self._failing_since is None:
            self._failing_since = now
        activity.logger.warning("reading batch %s failed: %s", self.request.batch.id, exc.message)
        message = exc.message
        if _refuses(exc) and self._refused_since is not None:
            message = f"{_refusal(exc)} since {_at(self._refused_since)}: {exc.message}"
        self.last = BatchWatch(
            batch=self.last.batch,
            gateway_error=message,
            polls=polls,
            refused_since=self._refused_since,
        )
        after = self.request.report_error_after_seconds
        failing_for = (now - self._failing_since).total_seconds()
        return after is not None and failing_for >= after

    def _refused(self, exc: GatewayError) -> None:
        """Note since when the gateway refuses; past the patience, give up on reading."""
        now = self._now()
        if self._refused_since is None:
            self._refused_since = now
        refused_for = (now - self._refused_since).total_seconds()
        if refused_for < self._patience:
            return
        raise ApplicationError(
            f"{_refusal(exc)} since {_at(self._refused_since)}, longer than the worker's "
            f"patience ({self._patience:g} s, GATEWAY_REFUSAL_PATIENCE_SECONDS): {exc.message}",
            type=FAILURE_GATEWAY_REFUSES,
            non_retryable=True,
        )

    def _error_delay(self, exc: GatewayError) -> float:
        backoff = min(self.request.poll_seconds, MAX_ERROR_BACKOFF_SECONDS, 2.0**self._failures)
        return max(backoff, exc.retry_after or 0.0)


def _refuses(exc: GatewayError) -> bool:
    """A refusal that passes: a key not yet known to every gateway node, a route reloading,
    a batch not yet visible everywhere just after its create."""
    return isinstance(exc, AuthenticationError | NotFoundError)


def _refusal(exc: GatewayError) -> str:
    if isinstance(exc, AuthenticationError):
        return "the gateway refuses this worker's key"
    return "the gateway does not find the batch (or its route)"


def _at(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


# Detached watches of this worker process; referenced so they are not collected.
_DETACHED: set[asyncio.Task[None]] = set()


async def hand_over_watches(within_seconds: float) -> None:
    """After the worker shut down: wait for its detached watches to settle their attempts."""
    if _DETACHED:
        await asyncio.wait(set(_DETACHED), timeout=within_seconds)


def detach(handle: AsyncActivityHandle, watch: Watch, heartbeat_every: float) -> None:
    """Run the watch after its activity returns; the caller then raises complete-async."""
    task = asyncio.create_task(run_detached(handle, watch, heartbeat_every))
    _DETACHED.add(task)
    task.add_done_callback(_DETACHED.discard)


async def run_detached(handle: AsyncActivityHandle, watch: Watch, heartbeat_every: float) -> None:
    """Heartbeat what the watch saw until it ends, then settle the attempt through the client.

    A beat follows each read that did not end the watch, the first one too (so
    the Web UI's heartbeat details are there from the watch's start and one poll
    old at most: a watch that settles a change returns at its second read, and
    small jobs start one a finished request), and goes out every
    ``heartbeat_every`` when reads are slower than that; a watch that returns at
    its first read costs no call.
    """
    work = asyncio.create_task(watch.run())
    try:
        try:
            while True:
                read = asyncio.create_task(watch.next_read())
                await asyncio.wait(
                    {work, read}, timeout=heartbeat_every, return_when=asyncio.FIRST_COMPLETED
                )
                read.cancel()
                if work.done():
                    break
                await _heartbeat(handle, watch)
            result = work.result()
        except AsyncActivityCancelledError:
            work.cancel()
            await handle.report_cancellation()
        except _AttemptGone:
            work.cancel()
        except GatewayError as exc:
            # Not chained: the failure is recorded in history as it is given.
            await handle.fail(gateway_failure(exc))
        except Exception as exc:
            await handle.fail(exc)
        else:
            await handle.complete(result)
    except RPCError as exc:
        # The attempt ended meanwhile (timed out, retried elsewhere): nothing to settle.
        activity.logger.warning("could not settle the watch of %s: %s", watch.request.batch.id, exc)


class _AttemptGone(Exception):
    """Temporal no longer knows this attempt (it timed out, or the workflow ended)."""


async def _heartbeat(handle: AsyncActivityHandle, watch: Watch) -> None:
    try:
        await handle.heartbeat(watch.details())
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            activity.logger.warning(
                "the watch of %s ended at Temporal (%s); stopping it", watch.request.batch.id, exc
            )
            raise _AttemptGone from exc
        # Temporal unreachable for a moment: the next beat tries again; for longer,
        # the heartbeat timeout hands the attempt to another worker.
        activity.logger.warning(
            "heartbeat of the watch of %s failed: %s", watch.request.batch.id, exc
        )
