"""A plain job waits out creates refused for the enqueued-token quota (a shard does not),
and a cancel that lands while the job attaches to a batch cancels that batch."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import ActivityError, ApplicationError, is_cancelled_exception

from contracts.job import JobPhase, JobProgress, JobStatus, QuotaRetry
from contracts.names import FAILURE_QUOTA_REFUSED, PATCH_SUBMIT, QUOTA_REFUSAL_CODE
from devstack.scripted import ScriptedBatch
from tests.workflows.test_batch_job_workflow import job, run_job
from tests.workflows.test_failure_paths import own_time_skipping_env, wait_for_call
from tests.workflows.test_long_wait import current_details
from workflows.batch_job import BatchJobWorkflow

__all__ = ["own_time_skipping_env"]


async def _progress_until(handle: WorkflowHandle, ready) -> JobProgress:  # type: ignore[no-untyped-def,type-arg]
    for _ in range(200):
        progress = await handle.query(BatchJobWorkflow.progress)
        if ready(progress):
            return progress
        await asyncio.sleep(0.05)
    raise AssertionError(f"never reached: last progress {progress}")


async def test_a_plain_job_refused_for_quota_waits_says_why_and_then_runs(time_skipping_env):
    script = ScriptedBatch(create_quota_refusals=1)
    async with script.serving(time_skipping_env) as start:
        handle = await start(job())
        waiting = await _progress_until(handle, lambda p: p.gateway_error is not None)
        details = await current_details(handle)
        result = await handle.result()

    assert waiting.phase is JobPhase.CREATING_BATCH
    assert waiting.reason is not None and "waiting for enqueued-token quota" in waiting.reason
    assert waiting.gateway_error == "Enqueued token limit reached for gpt-4o-mini"
    assert "waiting for enqueued-token quota" in details
    assert "Enqueued token limit reached" in details
    assert result.status is JobStatus.SUCCEEDED
    assert len(script.called("create_batch")) == 2
    assert not script.called("cancel_batch"), "a refused create made nothing to look for"
    [collect] = script.called("collect_results")
    assert collect.gateway_file_ids == ["file-1", "file-out"], "the upload once, at the end"


async def test_a_cancel_while_waiting_for_quota_ends_the_job_with_nothing_running(
    time_skipping_env,
):
    script = ScriptedBatch(create_quota_refusals=1000)
    async with script.serving(time_skipping_env) as start:
        handle = await start(job())
        await _progress_until(handle, lambda p: p.gateway_error is not None)
        await handle.cancel()
        with pytest.raises(WorkflowFailureError) as failure:
            await handle.result()

    assert is_cancelled_exception(failure.value.cause)
    assert len(script.called("create_batch")) == 1, "no create after the cancel"
    [look] = script.called("cancel_batch")
    assert look.batch_id is None, "only a look-up by job key: the refused create made nothing"
    [clean_up] = script.called("clean_up")
    assert clean_up.gateway_file_ids == ["file-1"], "no batch uses the upload: it is deleted"


async def test_quota_refusals_back_off_doubling_to_the_most(time_skipping_env):
    script = ScriptedBatch(create_quota_refusals=6)
    # 12 hours' 400th part (108 s) stays below the 2-minute ceiling, which it would raise.
    request = job(
        quota_retry=QuotaRetry(
            first=timedelta(seconds=30), most=timedelta(minutes=2), max_wait=timedelta(hours=12)
        )
    )

    handle, result = await run_job(time_skipping_env, script, request)

    assert result.status is JobStatus.SUCCEEDED
    assert len(script.called("create_batch")) == 7
    history = await handle.fetch_history()
    waits = [
        event.timer_started_event_attributes.start_to_fire_timeout.ToTimedelta()
        for event in history.events
        if event.event_type == EventType.EVENT_TYPE_TIMER_STARTED
    ]
    assert waits == [timedelta(seconds=s) for s in (30, 60, 120, 120, 120, 120)]


@pytest.mark.parametrize("patches_off", [(), (PATCH_SUBMIT,)], ids=["submit", "create-step"])
async def test_a_shard_refused_for_quota_fails_at_once_for_its_parent(
    time_skipping_env, patches_off: tuple[str, ...]
):
    script = ScriptedBatch(create_quota_refusals=1, patches_off=patches_off)

    with pytest.raises(WorkflowFailureError) as failure:
        await run_job(time_skipping_env, script, job(quota_retry=None))

    # The refusal itself (submit), or the create step's failure with it as its cause.
    cause = failure.value.cause
    if isinstance(cause, ActivityError):
        cause = cause.cause
    assert isinstance(cause, ApplicationError)
    assert cause.type == FAILURE_QUOTA_REFUSED
    assert f"[{QUOTA_REFUSAL_CODE}]" in cause.message, "what the parent's admission looks for"
    assert len(script.called("create_batch")) == 1
    assert not script.called("cancel_batch")
    [clean_up] = script.called("clean_up")
    assert clean_up.gateway_file_ids == ["file-1"], "the parent uploads again when it admits it"


@pytest.mark.parametrize("patches_off", [(), (PATCH_SUBMIT,)], ids=["submit", "create-step"])
async def test_a_shard_whose_batch_fails_late_for_quota_fails_for_its_parent_and_deletes_its_upload(
    time_skipping_env, patches_off: tuple[str, ...]
):
    # OpenAI's refusal: the create answers validating, the batch then fails unrun.
    script = ScriptedBatch(late_quota_refusals=1, patches_off=patches_off)

    with pytest.raises(WorkflowFailureError) as failure:
        await run_job(time_skipping_env, script, job(quota_retry=None))

    cause = failure.value.cause
    assert isinstance(cause, ApplicationError)
    assert cause.type == FAILURE_QUOTA_REFUSED, "not a rejected input: the parent admits it later"
    assert "Limit: 2,000,000 enqueued tokens" in cause.message
    assert not script.called("collect_results") and not script.called("cancel_batch")
    [clean_up] = script.called("clean_up")
    assert clean_up.gateway_file_ids == ["file-1"], "the refused batch's upload is not left"


async def test_a_plain_job_whose_batch_fails_late_for_quota_creates_again_on_its_upload(
    time_skipping_env,
):
    script = ScriptedBatch(late_quota_refusals=1)

    handle, result = await run_job(time_skipping_env, script, job())

    assert result.status is JobStatus.SUCCEEDED
    assert result.batch_id == "batch_2", "a second batch, once the quota had room"
    creates = script.called("create_batch")
    assert [c.input_file_id for c in creates] == ["file-1", "file-1"], "on the same upload"
    assert len(script.called("upload_input")) == 1, "uploaded once"
    [collect] = script.called("collect_results")
    assert collect.gateway_file_ids == ["file-1", "file-out"], "the upload deleted at the end"
    waits = [
        event
        for event in (await handle.fetch_history()).events
        if event.event_type == EventType.EVENT_TYPE_TIMER_STARTED
    ]
    assert len(waits) == 1, "it waited for the quota before creating again"


async def test_a_cancel_while_attaching_cancels_the_batch_and_keeps_what_finished(
    own_time_skipping_env,
):
    script = ScriptedBatch(path=[("in_progress", 10**6)], attach_holds=True)
    async with script.serving(own_time_skipping_env) as start:
        handle = await start(job(batch_id="batch_by_hand"))
        await wait_for_call(script, "attach_batch")
        await handle.cancel()
        await _cancel_seen_by_the_workflow(handle)
        script.release.set()
        result = await handle.result()
        history = await handle.fetch_history()

    assert result.status is JobStatus.CANCELLED
    assert result.batch_id == "batch_by_hand"
    assert result.batch_status == "cancelled"
    assert result.reason is not None and "while attaching" in result.reason
    [cancel] = script.called("cancel_batch")
    assert cancel.batch_id == "batch_by_hand"
    assert script.called("collect_results"), "what finished is collected"
    [attach_scheduled] = [
        event.event_id
        for event in history.events
        if event.activity_task_scheduled_event_attributes.activity_type.name == "attach_batch"
    ]
    [cancel_requested] = [
        event.event_id
        for event in history.events
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCEL_REQUESTED
    ]
    [attached] = [
        event.event_id
        for event in history.events
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED
        and event.activity_task_completed_event_attributes.scheduled_event_id == attach_scheduled
    ]
    assert attach_scheduled < cancel_requested < attached, "the cancel landed while attaching"


async def _cancel_seen_by_the_workflow(handle: WorkflowHandle) -> None:  # type: ignore[type-arg]
    """Until a workflow task has completed after the cancel request: it ran while attaching."""
    for _ in range(200):
        kinds = [event.event_type for event in (await handle.fetch_history()).events]
        if EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCEL_REQUESTED in kinds:
            after = kinds[kinds.index(EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCEL_REQUESTED) :]
            if EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED in after:
                return
        await asyncio.sleep(0.05)
    raise AssertionError("the workflow never took the cancel")
