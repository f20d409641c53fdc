"""Choosing how a job waits: the watch by default, retries of one poll when asked."""

from __future__ import annotations

from typing import Any

from temporalio.client import WorkflowHandle

from contracts.job import JobStatus
from contracts.names import ACTIVITY_AWAIT_STATUS_CHANGE, ACTIVITY_WATCH_BATCH
from devstack.scripted import ScriptedBatch
from tests.workflows.test_batch_job_workflow import job, run_job

POLLS_IN_PROGRESS = 6


def waiting_script() -> ScriptedBatch:
    return ScriptedBatch(
        path=[("validating", 1), ("in_progress", POLLS_IN_PROGRESS), ("finalizing", 1)]
    )


async def waits(handle: WorkflowHandle[Any, Any]) -> list[tuple[str, int]]:
    """Each wait activity the job ran, with the attempt it completed on."""
    names: dict[int, str] = {}
    found: list[tuple[str, int]] = []
    async for event in handle.fetch_history_events():
        if event.HasField("activity_task_scheduled_event_attributes"):
            scheduled = event.activity_task_scheduled_event_attributes
            names[event.event_id] = scheduled.activity_type.name
        if event.HasField("activity_task_started_event_attributes"):
            started = event.activity_task_started_event_attributes
            name = names[started.scheduled_event_id]
            if name in (ACTIVITY_WATCH_BATCH, ACTIVITY_AWAIT_STATUS_CHANGE):
                found.append((name, started.attempt))
    return found


async def patch_markers(handle: WorkflowHandle[Any, Any]) -> list[bytes]:
    return [
        event.marker_recorded_event_attributes.SerializeToString()
        async for event in handle.fetch_history_events()
        if event.HasField("marker_recorded_event_attributes")
    ]


async def test_a_new_job_waits_by_the_watch(time_skipping_env):
    handle, result = await run_job(time_skipping_env, waiting_script(), job())

    assert result.status is JobStatus.SUCCEEDED
    names = {name for name, _ in await waits(handle)}
    assert names == {ACTIVITY_WATCH_BATCH}


async def test_a_job_that_asks_for_retries_polls_by_retries_of_one_activity(time_skipping_env):
    handle, result = await run_job(time_skipping_env, waiting_script(), job(wait_by="retries"))

    assert result.status is JobStatus.SUCCEEDED
    found = await waits(handle)
    assert {name for name, _ in found} == {ACTIVITY_AWAIT_STATUS_CHANGE}
    in_progress_attempts = max(attempt for _, attempt in found)
    assert in_progress_attempts == POLLS_IN_PROGRESS + 1, "each poll was a retry of one step"
    watching, _ = await run_job(time_skipping_env, waiting_script(), job())
    assert await patch_markers(handle) == await patch_markers(watching), (
        "the job records the same patches as any new job, so both replay alike"
    )
