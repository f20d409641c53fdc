"""watch_batch: one attempt that polls inside, against the real emulator over HTTP.

What a person sees of a healthy wait is this attempt: it must not fail while
the batch is merely busy, must heartbeat what it saw, and must return when the
workflow has something to act on.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import cast

import pytest
from pydantic import SecretStr
from temporalio.client import AsyncActivityCancelledError, AsyncActivityHandle
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from activities.batch_activities import BatchActivities
from activities.watch import Watch, run_detached
from contracts.job import BatchCounts
from contracts.steps import BatchSnapshot, BatchWatch, WatchBatchRequest
from devstack.emulator import EmulatorProcess
from gateway.client import GatewayClient
from gateway.errors import (
    AuthenticationError,
    NotFoundError,
    RejectedByGatewayError,
    RetryableGatewayError,
)
from storage import LocalStorage
from tests.activities.conftest import settings_for
from tests.activities.helpers import ActivityRunner, chat_file
from tests.activities.test_batch_activities import Job
from workflows import step_options


@pytest.fixture
def job(
    request: pytest.FixtureRequest,
    runner: ActivityRunner,
    acts: BatchActivities,
    storage: LocalStorage,
) -> Job:
    return Job(runner, acts, storage, key=f"watch-{request.node.name}-{time.time_ns()}")


def watch_request(
    batch: BatchSnapshot, *, within: float = 20.0, **fields: object
) -> WatchBatchRequest:
    return WatchBatchRequest.model_validate(
        {
            "batch": batch,
            "poll_seconds": 0.02,
            "return_by": datetime.now(UTC) + timedelta(seconds=within),
            **fields,
        }
    )


async def test_a_busy_batch_is_watched_inside_one_attempt_until_its_status_moves(
    job: Job, emu: EmulatorProcess
) -> None:
    emu.set_knobs(force_outcome="stuck_validating")
    batch = await job.submit(chat_file(4))
    assert batch.status == "validating"
    job.runner.heartbeats.clear()
    # Beats every 0.2 s (a third of the timeout, at least 0.2 s), the first 0.2 s in.
    job.runner.env.info = dataclasses.replace(
        job.runner.env.info, heartbeat_timeout=timedelta(seconds=0.6)
    )

    # Stuck: the watch comes back at its return time with the batch it read, not a failure.
    stuck = await job.runner.run(
        job.acts.watch_batch, watch_request(batch, within=0.7, report_every=1)
    )
    assert (stuck.batch.id, stuck.batch.status) == (batch.id, "validating")
    assert stuck.polls > 1, "read again every poll interval inside the attempt"
    assert stuck.gateway_error is None
    beats = [details for details in job.runner.heartbeats if details]
    assert beats and all(isinstance(d[0], BatchWatch) for d in beats)
    assert beats[-1][0].batch.id == batch.id

    emu.force(batch.id, "none")
    moved = await job.runner.run(job.acts.watch_batch, watch_request(stuck.batch))
    assert moved.batch.status != "validating"
    assert moved.batch.counts is not None and moved.batch.counts.total == 4


async def test_a_failing_gateway_is_read_again_inside_and_reported_after_a_while(
    job: Job, emu: EmulatorProcess
) -> None:
    emu.set_knobs(force_outcome="stuck_validating")
    batch = await job.submit(chat_file(2))
    emu.set_knobs(error_rate=1.0, error_statuses=[503])

    watched = await job.runner.run(
        job.acts.watch_batch, watch_request(batch, report_error_after_seconds=0.2)
    )

    assert watched.batch == batch, "the last batch it could read"
    assert watched.gateway_error is not None and "503" in watched.gateway_error
    assert watched.polls > 1


async def test_a_revoked_key_fails_the_watch_past_the_patience_without_showing_the_key(
    emu: EmulatorProcess, runner: ActivityRunner, storage: LocalStorage
) -> None:
    right, wrong = "right-key-5f1c9e0a77", "revoked-key-SECRET-d41d8cd98f"
    emu.set_knobs(auth_header="apikey", auth_key=right)
    settings = settings_for(emu, api_key=SecretStr(wrong), refusal_patience_seconds=0.3)
    async with GatewayClient(settings) as client:
        acts = BatchActivities(client, storage)
        known = BatchSnapshot(id="batch_x", status="in_progress")
        with pytest.raises(ApplicationError) as caught:
            await runner.run(acts.watch_batch, watch_request(known))
    error = caught.value
    assert error.type == "GatewayRefuses"
    assert error.non_retryable
    assert "the gateway refuses this worker's key since" in error.message
    assert "401" in error.message and "GATEWAY_REFUSAL_PATIENCE_SECONDS" in error.message
    assert wrong not in error.message and right not in error.message


async def test_a_key_refused_for_a_few_reads_is_waited_out(job: Job, emu: EmulatorProcess) -> None:
    emu.set_knobs(force_outcome="stuck_validating")
    batch = await job.submit(chat_file(2))
    emu.set_knobs(refused_batch_reads=3)

    watched = await job.runner.run(
        job.acts.watch_batch, watch_request(batch, within=1.0, report_every=1)
    )

    assert watched.batch.id == batch.id and watched.gateway_error is None
    assert watched.refused_since is None, "cleared by the read that worked"
    assert emu.stats()["refused_reads"] == 3


async def test_a_refusing_gateway_is_shown_in_the_heartbeat_with_since_when() -> None:
    clock = Clock(poll=600)
    handle = FakeHandle()
    reads = clock.reading(refused("401"), refused("401"), batch_with(10, status="completed"))
    await detached(handle, Watch(watch_request(batch_with(10)), reads, now=clock.now))
    shown = [beat.gateway_error for beat in handle.beats]
    assert shown[0] is not None and shown[0].startswith(
        "the gateway refuses this worker's key since 2026-01-01 00:00:00 UTC: get batch: "
        "gateway answered 401"
    )
    assert handle.beats[-1].refused_since == datetime(2026, 1, 1, tzinfo=UTC)
    assert handle.outcome is not None and handle.outcome[0] == "completed"


def refused(kind: str) -> Exception:
    if kind == "401":
        return AuthenticationError("get batch: gateway answered 401 Unauthorized", status_code=401)
    return NotFoundError("get batch: gateway answered 404: no Route matched", status_code=404)


async def test_refusals_for_most_of_the_patience_then_a_read_that_works() -> None:
    clock = Clock(poll=600)
    reads = clock.reading(*[refused("401")] * 3, *[refused("404")] * 2, batch_with(20))
    watch = Watch(watch_request(batch_with(10), report_every=5), reads, now=clock.now)
    watched = await ActivityRunner().env.run(watch.run)
    assert watched.batch.finished == 20, "50 minutes of refusals, then the batch"
    assert watched.refused_since is None and watched.gateway_error is None


@pytest.mark.parametrize("kind", ["401", "404"])
async def test_an_hour_of_refusals_ends_the_watch_naming_since_when(kind: str) -> None:
    clock = Clock(poll=600)
    reads = 0
    read = clock.reading(refused(kind))

    async def counted(batch_id: str) -> BatchSnapshot:
        nonlocal reads
        reads += 1
        return await read(batch_id)

    watch = Watch(watch_request(batch_with(10)), counted, now=clock.now)
    with pytest.raises(ApplicationError) as caught:
        await ActivityRunner().env.run(watch.run)
    assert caught.value.type == "GatewayRefuses" and caught.value.non_retryable
    assert reads == 7, "first refused at 00:00, given up at 01:00 (an hour, the default)"
    assert "since 2026-01-01 00:00:00 UTC" in caught.value.message
    assert kind in caught.value.message


async def test_the_patience_runs_from_the_first_refusal_an_earlier_watch_saw() -> None:
    clock = Clock(poll=120)
    earlier = clock.at - timedelta(minutes=59)
    request = watch_request(batch_with(10), refused_since=earlier)
    watch = Watch(request, clock.reading(refused("401")), now=clock.now)
    with pytest.raises(ApplicationError) as caught:
        await ActivityRunner().env.run(watch.run)
    assert caught.value.type == "GatewayRefuses"
    assert "since 2025-12-31 23:01:00 UTC" in caught.value.message


def batch_with(finished: int, status: str = "in_progress") -> BatchSnapshot:
    return BatchSnapshot(
        id="batch_1", status=status, counts=BatchCounts(total=100, completed=finished)
    )


async def test_progress_is_reported_in_steps_not_on_every_read() -> None:
    reads = iter([batch_with(12), batch_with(14), batch_with(15), batch_with(40)])

    async def read(_: str) -> BatchSnapshot:
        return next(reads)

    watch = Watch(watch_request(batch_with(10), report_every=5), read)
    watched = await ActivityRunner().env.run(watch.run)
    assert watched.batch.finished == 15, "the first read 5 past what the workflow knew"
    assert watched.polls == 3


async def test_a_transient_error_before_the_first_read_keeps_the_known_batch() -> None:
    outcomes: list[BatchSnapshot | Exception] = [
        RetryableGatewayError("get batch: gateway answered 502", status_code=502),
        batch_with(10, status="finalizing"),
    ]

    async def read(_: str) -> BatchSnapshot:
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    watch = Watch(watch_request(batch_with(10)), read)
    watched = await ActivityRunner().env.run(watch.run)
    assert watched.batch.status == "finalizing"
    assert watched.gateway_error is None, "cleared by the read that worked"


async def test_a_worker_shutting_down_hands_the_watch_over_instead_of_failing() -> None:
    read_twice = asyncio.Event()
    reads = 0

    async def read(_: str) -> BatchSnapshot:
        nonlocal reads
        reads += 1
        if reads == 2:
            read_twice.set()
        return batch_with(11)

    runner = ActivityRunner()
    watch = Watch(watch_request(batch_with(10), within=600, report_every=5), read)
    task = asyncio.create_task(runner.env.run(watch.run))
    await asyncio.wait_for(read_twice.wait(), 10)
    runner.env.worker_shutdown()
    watched = await asyncio.wait_for(task, 10)
    assert watched.batch.finished == 11, "what it last saw, for the next worker to go on from"


class FakeHandle:
    """What a detached watch tells Temporal, recorded; `cancel_on_beat` stands for a cancel."""

    def __init__(self, cancel_on_beat: int | None = None, gone: bool = False) -> None:
        self.beats: list[BatchWatch] = []
        self.outcome: tuple[str, object] | None = None
        self.cancel_on_beat = cancel_on_beat
        self.gone = gone

    async def heartbeat(self, details: BatchWatch) -> None:
        self.beats.append(details)
        if self.gone:
            raise RPCError("activity already timed out", RPCStatusCode.NOT_FOUND, b"")
        if len(self.beats) == self.cancel_on_beat:
            raise AsyncActivityCancelledError()

    async def complete(self, result: object) -> None:
        self.outcome = ("completed", result)

    async def fail(self, error: Exception) -> None:
        self.outcome = ("failed", error)

    async def report_cancellation(self) -> None:
        self.outcome = ("cancelled", None)


def scripted_reads(
    *outcomes: BatchSnapshot | Exception,
) -> Callable[[str], Awaitable[BatchSnapshot]]:
    queue = list(outcomes)

    async def read(_: str) -> BatchSnapshot:
        outcome = queue.pop(0) if len(queue) > 1 else queue[0]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    return read


async def detached(handle: FakeHandle, watch: Watch) -> None:
    runner = ActivityRunner()  # an activity context, as the task it is started from
    await asyncio.wait_for(
        runner.env.run(run_detached, cast(AsyncActivityHandle, handle), watch, 0.01), 10
    )


async def test_a_detached_watch_heartbeats_what_it_saw_then_completes() -> None:
    reads = scripted_reads(*[batch_with(11)] * 10, batch_with(20))
    handle = FakeHandle()
    await detached(handle, Watch(watch_request(batch_with(10), report_every=5), reads))
    assert handle.beats and handle.beats[-1].batch.finished == 11
    assert handle.outcome is not None and handle.outcome[0] == "completed"
    result = handle.outcome[1]
    assert isinstance(result, BatchWatch) and result.batch.finished == 20


async def test_a_detached_watch_reports_a_cancel_and_stops_reading() -> None:
    handle = FakeHandle(cancel_on_beat=2)
    await detached(handle, Watch(watch_request(batch_with(10)), scripted_reads(batch_with(10))))
    assert handle.outcome == ("cancelled", None)


async def test_a_detached_watch_fails_on_a_bad_request_with_the_gateways_message() -> None:
    refused = RejectedByGatewayError("get batch: gateway answered 400", status_code=400)
    handle = FakeHandle()
    await detached(handle, Watch(watch_request(batch_with(10)), scripted_reads(refused)))
    assert handle.outcome is not None and handle.outcome[0] == "failed"
    error = handle.outcome[1]
    assert isinstance(error, ApplicationError)
    assert error.type == "RejectedByGatewayError" and error.non_retryable
    assert "400" in error.message


async def test_a_detached_watch_fails_once_the_key_was_refused_past_the_patience() -> None:
    clock = Clock(poll=60)
    handle = FakeHandle()
    watch = Watch(
        watch_request(batch_with(10)),
        clock.reading(refused("401")),
        now=clock.now,
        refusal_patience_seconds=300,
    )
    await detached(handle, watch)
    assert handle.outcome is not None and handle.outcome[0] == "failed"
    error = handle.outcome[1]
    assert isinstance(error, ApplicationError)
    assert error.type == "GatewayRefuses" and error.non_retryable
    assert "401" in error.message and "(300 s, GATEWAY_REFUSAL_PATIENCE_SECONDS)" in error.message
    assert handle.beats and all(
        beat.refused_since == clock.at - timedelta(minutes=5) for beat in handle.beats
    )


async def test_a_detached_watch_whose_attempt_timed_out_stops_reading() -> None:
    handle = FakeHandle(gone=True)
    await detached(handle, Watch(watch_request(batch_with(10)), scripted_reads(batch_with(10))))
    assert handle.outcome is None, "nothing left to settle"
    assert len(handle.beats) == 1


class Clock:
    """The watch's clock, moved on by each read (one poll interval a read)."""

    def __init__(self, poll: float) -> None:
        self.at = datetime(2026, 1, 1, tzinfo=UTC)
        self.poll = timedelta(seconds=poll)
        self.reads = 0

    def now(self) -> datetime:
        return self.at

    def reading(
        self, *outcomes: BatchSnapshot | Exception
    ) -> Callable[[str], Awaitable[BatchSnapshot]]:
        read = scripted_reads(*outcomes)

        async def timed(batch_id: str) -> BatchSnapshot:
            if self.reads:
                self.at += self.poll
            self.reads += 1
            return await read(batch_id)

        return timed


def settling_request(known: BatchSnapshot, clock: Clock, settle: float) -> WatchBatchRequest:
    return watch_request(
        known,
        report_every=5,
        report_changes_after_seconds=settle,
        return_by=clock.at + timedelta(hours=1),
    )


async def test_a_batch_that_ends_within_the_settle_time_costs_one_watch() -> None:
    clock = Clock(poll=1.0)
    reads = clock.reading(
        batch_with(0, "in_progress"), batch_with(100, "finalizing"), batch_with(100, "completed")
    )
    watch = Watch(settling_request(batch_with(0, "validating"), clock, 60), reads, now=clock.now)
    watched = await ActivityRunner().env.run(watch.run)
    assert (watched.batch.status, watched.polls) == ("completed", 3)


async def test_a_new_status_is_reported_once_the_watch_has_run_its_settle_time() -> None:
    clock = Clock(poll=1.0)
    reads = clock.reading(*[batch_with(0, "in_progress")] * 5, batch_with(100, "completed"))
    watch = Watch(settling_request(batch_with(0, "validating"), clock, 2), reads, now=clock.now)
    watched = await ActivityRunner().env.run(watch.run)
    assert (watched.batch.status, watched.polls) == ("in_progress", 3)


async def test_while_a_change_settles_the_heartbeat_shows_it() -> None:
    reads = scripted_reads(*[batch_with(40, "in_progress")] * 20, batch_with(100, "completed"))
    request = watch_request(batch_with(0, "validating"), report_changes_after_seconds=60)
    handle = FakeHandle()
    await detached(handle, Watch(request, reads))
    assert any(beat.batch.status == "in_progress" for beat in handle.beats)
    assert handle.outcome is not None and handle.outcome[0] == "completed"
    result = handle.outcome[1]
    assert isinstance(result, BatchWatch) and result.batch.status == "completed"


async def test_a_detached_watch_beats_once_a_read_not_once_a_third_of_its_timeout() -> None:
    """10,000 waiting jobs beat 10,000 times a poll interval, not 30,000 a minute."""
    reads = scripted_reads(*[batch_with(10)] * 6, batch_with(20))
    handle = FakeHandle()
    runner = ActivityRunner()
    watch = Watch(watch_request(batch_with(10), report_every=5), reads)
    await asyncio.wait_for(
        runner.env.run(run_detached, cast(AsyncActivityHandle, handle), watch, 30.0), 10
    )
    # Seven reads: one after each of the first six, none after the last (it ends the watch).
    assert len(handle.beats) == 6
    assert handle.outcome is not None and handle.outcome[0] == "completed"


def test_a_watch_may_go_three_polls_without_a_beat_before_another_worker_takes_it() -> None:
    slow = step_options.watch(timedelta(seconds=60), timedelta(minutes=5))
    fast = step_options.watch(timedelta(minutes=10), timedelta(seconds=30))
    assert (slow.heartbeat_timeout, fast.heartbeat_timeout) == (
        timedelta(minutes=15),
        timedelta(minutes=10),
    )
