"""The wait as a person sees it, and deadlines about the batch rather than the workers.

What the Web UI shows is read here through the APIs it reads: describe (the
pending activity's attempt, last failure and heartbeat), the metadata query
(current details) and the history (each activity's summary).
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import pytest
from temporalio import workflow
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from contracts.job import BatchJobInput, BatchJobResult, JobStatus
from contracts.names import (
    ACTIVITY_AWAIT_STATUS_CHANGE,
    ACTIVITY_WATCH_BATCH,
    PATCH_SUBMIT,
    WORKFLOW_NAME,
)
from contracts.steps import BatchWatch
from devstack.scripted import REQUESTS, ScriptedBatch
from tests.workflows.test_batch_job_workflow import job, run_job
from workflows.batch_job import BatchJobWorkflow

HOURS = 6  # polls of 10 minutes in an hour


async def current_details(handle: WorkflowHandle[Any, Any]) -> str:
    metadata = await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
    return metadata.current_details


async def summaries(env: WorkflowEnvironment, handle: WorkflowHandle[Any, Any]) -> list[str]:
    """The summary of every activity the job scheduled, in order, as the timeline shows them."""
    converter = env.client.data_converter
    found: list[str] = []
    async for event in handle.fetch_history_events():
        if event.HasField("activity_task_scheduled_event_attributes"):
            [text] = await converter.decode([event.user_metadata.summary], [str])
            found.append(text)
    return found


async def test_a_healthy_wait_shows_no_failure_and_counts_that_advance(time_skipping_env):
    script = ScriptedBatch(
        path=[("validating", 0), ("in_progress", 10**6)], hold_at=("in_progress", 3)
    )
    async with script.serving(time_skipping_env) as start:
        handle = await start(job())
        details = ""
        for _ in range(200):
            details = await current_details(handle)
            if "3/5 finished" in details:
                break
            await asyncio.sleep(0.05)
        assert "**requests** 3/5 finished, 0 failed" in details
        assert "**batch** batch_1 (in_progress)" in details
        assert "**in_progress since**" in details and "**deadline**" in details

        described = await handle.describe()
        [pending] = described.raw_description.pending_activities
        assert pending.activity_type.name == ACTIVITY_WATCH_BATCH
        assert pending.attempt == 1
        assert not pending.HasField("last_failure"), "a busy batch is not a failure"
        for _ in range(100):
            described = await handle.describe()
            [pending] = described.raw_description.pending_activities
            if pending.heartbeat_details.payloads:
                break
            await asyncio.sleep(0.05)
        [beat] = await time_skipping_env.client.data_converter.decode(
            pending.heartbeat_details.payloads, [BatchWatch]
        )
        assert beat.batch.finished == 3

        script.release.set()
        result = await handle.result()
    assert result.status is JobStatus.SUCCEEDED
    shown = await summaries(time_skipping_env, handle)
    assert shown[0] == "validate and upload batch.jsonl, create batch"
    assert "wait: in_progress, 0/5 finished" in shown
    assert "wait: in_progress, 2/5 finished" in shown, "counts advance between watches"
    assert shown[-1] == f"collect {REQUESTS} results, then delete 2 gateway files"


async def test_a_failing_gateway_shows_in_the_details_a_bounded_number_of_times(
    time_skipping_env,
):
    script = ScriptedBatch(
        path=[("validating", 0), ("in_progress", 10**6)],
        hold_at=("in_progress", 0),
        gateway_errors=10,
    )
    async with script.serving(time_skipping_env) as start:
        handle = await start(job())
        for _ in range(200):
            if len(script.called("watch_batch")) >= 5:
                break
            await asyncio.sleep(0.05)
        details = await current_details(handle)
        assert "**last gateway error** get batch: gateway answered 503 (retrying)" in details
        [pending] = (await handle.describe()).raw_description.pending_activities
        assert pending.attempt == 1 and not pending.HasField("last_failure")
        script.release.set()
        await handle.result()
    watches = [r for name, r in script.calls if name == "watch_batch"]
    allowed = [w.report_error_after_seconds is not None for w in watches[1:5]]
    assert allowed == [True, True, True, False], "three reports, then the watch keeps quiet"
    assert script.gateway_errors == 7


async def test_no_worker_for_3_days_mid_wait_then_the_finished_batch_is_collected(
    time_skipping_env,
):
    # The batch completes after 20 hours, while no worker runs for 3 days.
    script = ScriptedBatch(path=[("validating", 1), ("in_progress", 20 * HOURS)])
    script.outage_in = "in_progress"
    before = await time_skipping_env.get_current_time()

    _, result = await run_job(time_skipping_env, script, job())

    assert await time_skipping_env.get_current_time() - before >= timedelta(days=3)
    assert result.status is JobStatus.SUCCEEDED
    assert result.requests.succeeded == REQUESTS
    assert not script.called("cancel_batch"), "past the in_progress deadline, but finished"
    [collect] = script.called("collect_results")
    assert collect.batch.status == "completed"


async def test_no_worker_for_3_days_mid_collection_then_every_result_is_written(
    time_skipping_env,
):
    script = ScriptedBatch(collect_outage=timedelta(days=3))
    before = await time_skipping_env.get_current_time()

    _, result = await run_job(time_skipping_env, script, job())

    assert await time_skipping_env.get_current_time() - before >= timedelta(days=3)
    assert result.status is JobStatus.SUCCEEDED
    assert result.requests.succeeded == REQUESTS
    assert len(script.called("collect_results")) == 2


@pytest.mark.parametrize("timestamps", [True, False], ids=["gateway-clock", "first-seen"])
async def test_a_batch_past_its_deadline_that_moved_on_is_waited_for(
    time_skipping_env, timestamps: bool
):
    # In progress for 70 hours (past the 26-hour deadline), then 3 hours finalizing;
    # the worker is away from the first hour to the 73rd.
    script = ScriptedBatch(
        path=[("validating", 1), ("in_progress", 70 * HOURS), ("finalizing", 3 * HOURS)],
        outage_in="in_progress",
        timestamps=timestamps,
    )
    _, result = await run_job(time_skipping_env, script, job())

    assert result.status is JobStatus.SUCCEEDED
    assert not script.called("cancel_batch")
    assert script.called("collect_results")


async def test_a_batch_really_stuck_is_read_again_then_cancelled(time_skipping_env):
    script = ScriptedBatch(path=[("validating", 1), ("in_progress", 10**6)])
    script.outage_in = "in_progress"

    _, result = await run_job(time_skipping_env, script, job())

    assert result.status is JobStatus.DEADLINE_EXCEEDED
    assert "in_progress" in (result.reason or "")
    names = [name for name, _ in script.calls]
    cancel_at = names.index("cancel_batch")
    watches = [r for name, r in script.calls[:cancel_at] if name == "watch_batch"]
    running = [w for w in watches if w.batch.status == "in_progress"]
    # The watch that was due at the deadline (26 h) ran 3 days late; the job read
    # the batch again then, before it cancelled.
    assert running[-1].return_by - running[0].return_by > timedelta(days=2)
    [cancel] = script.called("cancel_batch")
    assert cancel.batch_id == "batch_1"
    assert script.called("collect_results"), "what finished is kept"


@pytest.mark.parametrize(
    ("timestamps", "earliest", "latest"),
    [(True, timedelta(hours=26), timedelta(hours=27)), (False, timedelta(hours=50), None)],
    ids=["gateway-clock", "first-seen"],
)
async def test_the_deadline_runs_from_when_the_batch_entered_its_status(
    time_skipping_env, timestamps: bool, earliest: timedelta, latest: timedelta | None
):
    # The batch starts running at once, but no worker sees it for a day. The
    # gateway's in_progress_at starts the 26-hour deadline; where the gateway
    # gives no timestamp, the job's first sight of in_progress does.
    script = ScriptedBatch(
        path=[("validating", 1), ("in_progress", 10**6)],
        outage_in="validating",
        outage=timedelta(days=1),
        timestamps=timestamps,
    )
    _, result = await run_job(time_skipping_env, script, job())

    waited = result.finished_at - result.started_at
    assert result.status is JobStatus.DEADLINE_EXCEEDED
    assert waited >= earliest
    assert latest is None or waited < latest


async def test_a_revoked_key_fails_the_job_naming_the_batch_and_its_files(time_skipping_env):
    script = ScriptedBatch(
        path=[("in_progress", 5)],
        poll_failure=ApplicationError(
            "get batch: gateway answered 401", type="AuthenticationError", non_retryable=True
        ),
    )
    with pytest.raises(WorkflowFailureError) as failure:
        await run_job(time_skipping_env, script, job())
    cause = failure.value.cause
    assert isinstance(cause, ApplicationError)
    assert cause.type == "AuthenticationError"
    assert "401" in cause.message
    assert "batch_1" in cause.message and "input file file-1" in cause.message
    assert "output file none" in cause.message and "error file none" in cause.message
    assert "stops billing" in cause.message


@workflow.defn(name=WORKFLOW_NAME)
class WorkflowBeforeTheWatch(BatchJobWorkflow):
    """The workflow as it was before PATCH_WATCH: it waits by retries of one poll."""

    @workflow.run
    async def run(self, job: BatchJobInput) -> BatchJobResult:
        return await super().run(job)

    def _watches(self) -> bool:
        return False

    def _validates_and_uploads(self) -> bool:
        return False  # nor did it know the patches after the watch


async def test_a_job_started_before_the_watch_finishes_on_the_new_workers(time_skipping_env):
    script = ScriptedBatch(path=[("in_progress", 3), ("finalizing", 1)])
    queue = f"upgrade-{uuid.uuid4()}"
    client = time_skipping_env.client
    async with Worker(
        client,
        task_queue=queue,
        workflows=[WorkflowBeforeTheWatch],
        activities=script.activities(),
        max_cached_workflows=0,  # no sticky queue: the next worker gets the next task
        patch_activation_callback=lambda patch: patch.patch_id != PATCH_SUBMIT,
    ):
        handle = await client.start_workflow(
            WORKFLOW_NAME,
            job(heartbeat_timeout=timedelta(seconds=1)),
            id=f"job-{uuid.uuid4()}",
            task_queue=queue,
            result_type=BatchJobResult,
        )
        for _ in range(200):
            progress = await handle.query(BatchJobWorkflow.progress)
            if progress.batch_status == "in_progress":
                break
            await asyncio.sleep(0.05)
        assert progress.batch_status == "in_progress"
    # A deploy: the old workers are gone mid-wait, the new ones take over.
    async with Worker(
        client, task_queue=queue, workflows=[BatchJobWorkflow], activities=script.activities()
    ):
        result = await asyncio.wait_for(handle.result(), 60)
    assert result.status is JobStatus.SUCCEEDED
    scheduled = [
        event.activity_task_scheduled_event_attributes.activity_type.name
        async for event in handle.fetch_history_events()
        if event.HasField("activity_task_scheduled_event_attributes")
    ]
    assert ACTIVITY_AWAIT_STATUS_CHANGE in scheduled, "the job kept the wait it began"
    assert ACTIVITY_WATCH_BATCH not in scheduled
