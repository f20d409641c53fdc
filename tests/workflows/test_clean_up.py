"""What a job leaves behind on each way it can end: its input index and its gateway files."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import pytest
from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError, is_cancelled_exception
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from contracts.job import BatchJobInput, BatchJobResult, JobStatus, PhaseDeadlines
from contracts.names import (
    ACTIVITY_COLLECT_RESULTS,
    ACTIVITY_VALIDATE_AND_UPLOAD,
    ACTIVITY_WATCH_BATCH,
    PATCH_SUBMIT,
    PATCH_WAIT_OUT_UNCANCELLED,
)
from contracts.steps import (
    BatchWatch,
    CleanUpRequest,
    CollectedResults,
    CollectResultsRequest,
    WatchBatchRequest,
)
from devstack.scripted import ScriptedBatch
from devstack.temporal import start_time_skipping
from tests.workflows.test_batch_job_workflow import job, run_job
from tests.workflows.test_failure_paths import wait_for_call
from workflows.batch_job import BatchJobWorkflow

SHA256 = "0" * 64  # what the scripted validation reports


def clean_ups(script: ScriptedBatch) -> list[CleanUpRequest]:
    return script.called("clean_up")


def index_only(request: CleanUpRequest) -> bool:
    """The step removes the input index beside the results and deletes nothing at the gateway."""
    return (
        request.output_path == "in/batch.output.jsonl"
        and request.input_sha256 == SHA256
        and request.gateway_file_ids == []
    )


def collects(script: ScriptedBatch) -> list[CollectResultsRequest]:
    return script.called("collect_results")


async def test_a_completed_job_deletes_its_upload_and_the_batch_files(time_skipping_env):
    script = ScriptedBatch()
    handle, result = await run_job(time_skipping_env, script, job())
    assert result.status is JobStatus.SUCCEEDED
    [collect] = collects(script)
    assert collect.gateway_file_ids == ["file-1", "file-out"]
    assert clean_ups(script) == [], "the collect step deleted them: no step after it"
    assert result.gateway_files is not None
    assert result.gateway_files.deleted == ["file-1", "file-out"]
    assert result.gateway_files.left == {}
    # One patch marker (collect-cleans-up-v1): the job asks neither the watch's nor
    # validate-and-upload's, whose code it runs.
    history = await handle.fetch_history()
    markers = [e for e in history.events if e.event_type == EventType.EVENT_TYPE_MARKER_RECORDED]
    assert len(markers) == 1


async def test_an_older_workers_collect_leaves_the_deletes_to_the_clean_up_step(
    time_skipping_env,
):
    script = ScriptedBatch(collect_deletes_nothing=True)
    _, result = await run_job(time_skipping_env, script, job())
    assert result.status is JobStatus.SUCCEEDED
    [clean_up] = clean_ups(script)
    assert clean_up.gateway_file_ids == ["file-1", "file-out"]
    assert clean_up.input_sha256 == SHA256
    assert result.gateway_files is not None
    assert result.gateway_files.deleted == ["file-1", "file-out"]


async def test_keep_gateway_files_deletes_nothing_and_says_so(time_skipping_env):
    script = ScriptedBatch()
    _, result = await run_job(time_skipping_env, script, job(keep_gateway_files=True))
    assert result.status is JobStatus.SUCCEEDED
    assert clean_ups(script) == [], "collection already removed the index: no step left"
    assert [c.gateway_file_ids for c in collects(script)] == [[]]
    assert result.gateway_files is not None
    assert result.gateway_files.deleted == []
    assert set(result.gateway_files.left) == {"file-1", "file-out"}
    assert "keep_gateway_files" in result.gateway_files.left["file-1"]


async def test_an_attached_batch_keeps_its_files_at_the_gateway(time_skipping_env):
    script = ScriptedBatch()
    _, result = await run_job(time_skipping_env, script, job(batch_id="batch_by_hand"))
    assert result.status is JobStatus.SUCCEEDED
    assert clean_ups(script) == []
    assert result.gateway_files is not None
    assert result.gateway_files.deleted == []
    # The input file is someone else's upload: not even listed as ours.
    assert list(result.gateway_files.left) == ["file-out"]
    assert "attached" in result.gateway_files.left["file-out"]


async def test_a_rejected_batch_leaves_neither_index_nor_upload(time_skipping_env):
    script = ScriptedBatch(path=[("validating", 2)], final="failed", errors=["line 3: bad"])
    with pytest.raises(WorkflowFailureError) as failure:
        await run_job(time_skipping_env, script, job())
    assert isinstance(failure.value.cause, ApplicationError)
    assert failure.value.cause.type == "BatchFailed"
    [clean_up] = clean_ups(script)
    assert clean_up.input_sha256 == SHA256
    assert clean_up.gateway_file_ids == ["file-1"]


async def test_a_deadline_with_no_output_deletes_the_files_of_the_ended_batch(time_skipping_env):
    script = ScriptedBatch(path=[("validating", 10**6)])
    deadlines = PhaseDeadlines(validating=timedelta(hours=2))
    _, result = await run_job(time_skipping_env, script, job(deadlines=deadlines))
    assert result.status is JobStatus.DEADLINE_EXCEEDED
    assert result.batch_status == "cancelled"
    [collect] = collects(script)
    assert collect.gateway_file_ids is not None
    assert "file-1" in collect.gateway_file_ids
    assert clean_ups(script) == []
    assert result.gateway_files is not None
    assert "file-1" in result.gateway_files.deleted


async def test_a_job_before_wait_out_leaves_a_batch_it_could_not_cancel_its_files(
    time_skipping_env,
):
    # A job started before wait-out-uncancelled-v1 stops waiting past the deadline.
    script = ScriptedBatch(
        path=[("in_progress", 10**6)],
        cancel_unsupported=True,
        patches_off=(PATCH_WAIT_OUT_UNCANCELLED,),
    )
    deadlines = PhaseDeadlines(in_progress=timedelta(hours=1))
    _, result = await run_job(time_skipping_env, script, job(deadlines=deadlines))
    assert result.status is JobStatus.DEADLINE_EXCEEDED
    assert result.batch_status == "in_progress"
    assert clean_ups(script) == [], "collection removed the index; the batch may still run"
    assert [c.gateway_file_ids for c in collects(script)] == [[]]
    assert result.gateway_files is not None
    assert result.gateway_files.left == {"file-1": "batch batch_1 had not ended (in_progress)"}


async def test_a_cancel_during_create_removes_the_index_only(time_skipping_env):
    # A job started before submit-v1 creates in a step of its own.
    script = ScriptedBatch(create_hangs=True, patches_off=(PATCH_SUBMIT,))
    async with script.serving(time_skipping_env) as start:
        handle = await start(job(heartbeat_timeout=timedelta(seconds=1)))
        await wait_for_call(script, "create_batch")
        await handle.cancel()
        with pytest.raises(WorkflowFailureError) as failure:
            await handle.result()
    assert is_cancelled_exception(failure.value.cause)
    [clean_up] = clean_ups(script)
    assert index_only(clean_up)
    names = [name for name, _ in script.calls]
    assert names.index("cancel_batch") < names.index("clean_up")


async def test_a_cancel_during_submit_looks_for_the_batch_and_leaves_the_index_to_the_step(
    time_skipping_env,
):
    """The workflow has no checkpoint of a cancelled submit step: the step removes the
    index itself (tests/activities/test_submit_batch.py), the workflow cancels any batch."""
    script = ScriptedBatch(create_hangs=True)
    async with script.serving(time_skipping_env) as start:
        handle = await start(job(heartbeat_timeout=timedelta(seconds=1)))
        await wait_for_call(script, "create_batch")
        await handle.cancel()
        with pytest.raises(WorkflowFailureError) as failure:
            await handle.result()
    assert is_cancelled_exception(failure.value.cause)
    assert clean_ups(script) == []
    [cancel] = script.called("cancel_batch")
    assert cancel.batch_id is None, "found by the job key: the POST may have been out"
    assert ("create_batch_cancelled", script.called("create_batch")[0]) in script.calls


async def test_giving_up_mid_wait_removes_the_index_and_keeps_the_files(time_skipping_env):
    script = ScriptedBatch(
        path=[("in_progress", 5)],
        poll_failure=ApplicationError(
            "get batch: gateway answered 401", type="AuthenticationError", non_retryable=True
        ),
    )
    with pytest.raises(WorkflowFailureError) as failure:
        await run_job(time_skipping_env, script, job())
    assert isinstance(failure.value.cause, ApplicationError)
    assert failure.value.cause.type == "AuthenticationError", "the job's outcome is unchanged"
    [clean_up] = clean_ups(script)
    assert index_only(clean_up)


async def test_a_failed_collection_removes_the_index_and_keeps_the_files(time_skipping_env):
    script = ScriptedBatch()

    @activity.defn(name=ACTIVITY_COLLECT_RESULTS)
    async def collect_results(request: CollectResultsRequest) -> CollectedResults:
        raise ApplicationError("results location gone", type="InvalidLocation", non_retryable=True)

    with pytest.raises(WorkflowFailureError) as failure:
        await run_on(time_skipping_env, script, job(), collect_results)
    assert isinstance(failure.value.cause, ApplicationError)
    assert "the job deleted none of its files at the gateway" in failure.value.cause.message
    [clean_up] = clean_ups(script)
    assert index_only(clean_up)


async def test_a_clean_up_that_keeps_failing_never_fails_the_job(time_skipping_env):
    # An older worker's collect, so the clean-up step deletes.
    script = ScriptedBatch(
        clean_up_failure=ApplicationError("delete file: gateway answered 503", type="Unavailable"),
        collect_deletes_nothing=True,
    )
    _, result = await run_job(time_skipping_env, script, job())
    assert result.status is JobStatus.SUCCEEDED
    assert len(clean_ups(script)) == 5, "a few tries, then it is reported"
    assert result.gateway_files is not None
    assert result.gateway_files.deleted == []
    assert set(result.gateway_files.left) == {"file-1", "file-out"}
    assert result.gateway_files.left["file-1"] == (
        "the delete did not finish: delete file: gateway answered 503"
    )


async def test_a_job_whose_input_does_not_validate_has_nothing_to_clean(time_skipping_env):
    script = ScriptedBatch()

    @activity.defn(name=ACTIVITY_VALIDATE_AND_UPLOAD)
    async def validate_and_upload(request: Any) -> Any:
        raise ApplicationError("in/batch.jsonl line 1: not JSON", non_retryable=True)

    with pytest.raises(WorkflowFailureError):
        await run_on(time_skipping_env, script, job(), validate_and_upload)
    assert clean_ups(script) == [], "validation writes the index only once the input is valid"


async def test_an_error_that_fails_only_the_workflow_task_cleans_nothing_up():
    """A bug (here, a gateway timestamp past year 9999) fails the workflow task, not the job:
    fixed code replays past it, and a clean-up step scheduled here would break that replay.

    Its own server: after it, the shared test server no longer skipped time for the next test.
    """
    script = ScriptedBatch()

    @activity.defn(name=ACTIVITY_WATCH_BATCH)
    async def watch_batch(request: WatchBatchRequest) -> BatchWatch:
        moved = request.batch.model_copy(update={"status": "in_progress", "in_progress_at": 10**13})
        return BatchWatch(batch=moved)

    async def task_failed(handle: Any) -> bool:
        history = await handle.fetch_history()
        return any(
            e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED for e in history.events
        )

    env = await start_time_skipping()
    try:
        async with serving(env, script, watch_batch) as start:
            handle = await start(job())
            for _ in range(400):
                if await task_failed(handle):
                    break
                await asyncio.sleep(0.05)
            else:
                raise AssertionError("the workflow task never failed")
            await handle.terminate()
    finally:
        await env.shutdown()
    assert script.called("validate_input"), "the index exists by then"
    assert clean_ups(script) == []


@asynccontextmanager
async def serving(
    env: WorkflowEnvironment, script: ScriptedBatch, replacement: Callable[..., Any]
) -> AsyncIterator[Callable[[BatchJobInput], Awaitable[Any]]]:
    """A worker on the script's activities, one of them replaced; yields a starter."""
    queue = f"test-{uuid.uuid4()}"
    async with Worker(
        env.client,
        task_queue=queue,
        workflows=[BatchJobWorkflow],
        activities=script.activities(replacement),
    ):

        async def start(request: BatchJobInput) -> Any:
            return await env.client.start_workflow(
                BatchJobWorkflow.run, request, id=f"job-{uuid.uuid4()}", task_queue=queue
            )

        yield start


async def run_on(
    env: WorkflowEnvironment,
    script: ScriptedBatch,
    request: BatchJobInput,
    replacement: Callable[..., Any],
) -> BatchJobResult:
    """Run the job on the script's activities, one of them replaced."""
    async with serving(env, script, replacement) as start:
        handle = await start(request)
        return await asyncio.wait_for(handle.result(), 60)
