"""The wait as a person sees it, and deadlines about the batch rather than the workers.

What the Web UI shows is read here through the APIs it reads: describe (the
pending activity's attempt, last failure and heartbeat), the metadata query
(current details) and the history (each activity's summary).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from contracts.job import JobStatus
from contracts.names import ACTIVITY_WATCH_BATCH
from contracts.steps import BatchWatch
from tests.workflows.fakes import REQUESTS, ScriptedBatch
from tests.workflows.test_batch_job_workflow import job, run_job

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
    assert shown[:3] == ["validate batch.jsonl", "upload batch.jsonl (1000 B)", "create batch"]
    assert "wait: in_progress, 0/5 finished" in shown
    assert "wait: in_progress, 2/5 finished" in shown, "counts advance between watches"
    assert shown[-1] == f"collect {REQUESTS} results"


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
