"""Waiting jobs on a real worker, seen through what the Web UI reads.

A waiting job must look healthy (its watch on attempt 1, no failure) and must
not hold one of the worker's activity slots: with two slots, four batches
wait at once and the other steps still run.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from temporalio.api.enums.v1 import PendingActivityState
from temporalio.api.sdk.v1 import WorkflowMetadata

from contracts.job import JobStatus
from contracts.names import ACTIVITY_WATCH_BATCH
from contracts.steps import BatchWatch
from tests.e2e.conftest import Stack
from tests.e2e.helpers import assert_each_request_exactly_once, fast_job, start, wait_for

JOBS = 4
REQUESTS = 10


async def running_watch(handle: Any) -> Any:
    """The job's watch once a worker runs it and it has heartbeated."""
    for _ in range(200):
        description = await handle.describe()
        pending = description.raw_description.pending_activities
        if (
            pending
            and pending[0].state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
            and pending[0].heartbeat_details.payloads
        ):
            return pending[0]
        await asyncio.sleep(0.05)
    raise AssertionError(f"no running watch with a heartbeat: {pending}")


async def test_waiting_jobs_hold_no_slot_and_show_no_failure(stack: Stack):
    # Every batch stays in validating until released; two activity slots for four jobs.
    stack.emulator.set_knobs(force_outcome="stuck_validating")
    for i in range(JOBS):
        stack.write_input(f"in-{i}.jsonl", REQUESTS)
    with stack.worker(WORKER_MAX_CONCURRENT_ACTIVITIES="2"):
        handles = [
            await start(stack, fast_job(input_path=f"in-{i}.jsonl"), prefix=f"wait{i}")
            for i in range(JOBS)
        ]
        waiting = [
            await wait_for(h, lambda p: p.batch_status == "validating", within=30) for h in handles
        ]

        # Every batch is watched at once: no watch waits for a slot another holds.
        watches = [await running_watch(h) for h in handles]
        first, pending = handles[0], watches[0]
        assert pending.activity_type.name == ACTIVITY_WATCH_BATCH
        assert pending.attempt == 1
        assert not pending.HasField("last_failure")
        [seen] = await stack.client.data_converter.decode(
            pending.heartbeat_details.payloads, [BatchWatch]
        )
        assert seen.batch.status == "validating" and seen.gateway_error is None
        metadata = await first.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
        assert "(validating)" in metadata.current_details
        assert "**deadline**" in metadata.current_details

        stack.emulator.set_knobs(force_outcome="none")
        for progress in waiting:
            assert progress.batch_id is not None
            stack.emulator.force(progress.batch_id, "none")
        results = [await asyncio.wait_for(h.result(), 120) for h in handles]
    for result in results:
        assert result.status is JobStatus.SUCCEEDED
        assert_each_request_exactly_once(stack, result, REQUESTS)


async def started_watch(handle: Any, other_than: str = "") -> Any:
    """The job's watch once a worker runs it (a new one, if `other_than` names the old)."""
    for _ in range(400):
        description = await handle.describe()
        pending = description.raw_description.pending_activities
        if (
            pending
            and pending[0].state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
            and pending[0].activity_id != other_than
        ):
            return pending[0]
        await asyncio.sleep(0.05)
    raise AssertionError(f"no running watch: {pending}")


async def test_a_worker_stopped_mid_wait_hands_its_watch_over_without_a_failure(stack: Stack):
    stack.emulator.set_knobs(force_outcome="stuck_validating")
    stack.write_input("in.jsonl", REQUESTS)
    first_worker = stack.worker("worker-1").start()
    try:
        # A heartbeat timeout far longer than the test: only a hand-over is quick.
        handle = await start(stack, fast_job(heartbeat_timeout=timedelta(minutes=5)))
        progress = await wait_for(handle, lambda p: p.batch_status == "validating", within=30)
        old = await started_watch(handle)
    finally:
        assert first_worker.stop() == 0, "SIGTERM: a graceful stop"
    with stack.worker("worker-2"):
        new = await started_watch(handle, other_than=old.activity_id)
        assert new.attempt == 1 and not new.HasField("last_failure")
        assert progress.batch_id is not None
        stack.emulator.set_knobs(force_outcome="none")
        stack.emulator.force(progress.batch_id, "none")
        result = await asyncio.wait_for(handle.result(), 60)
    assert result.status is JobStatus.SUCCEEDED
