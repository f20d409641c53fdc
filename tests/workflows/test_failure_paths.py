"""The job when the gateway fails for good, or a cancel lands mid-create or mid-collect."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
import pytest_asyncio
from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError, is_cancelled_exception
from temporalio.testing import WorkflowEnvironment

from contracts.job import JobPhase, JobStatus
from devstack.scripted import ScriptedBatch
from devstack.temporal import start_time_skipping
from tests.workflows.test_batch_job_workflow import job, run_job


async def wait_for_call(script: ScriptedBatch, name: str) -> None:
    for _ in range(200):
        if script.called(name):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{name} never called")


async def test_a_revoked_key_mid_wait_cancels_the_batch_and_names_it(time_skipping_env):
    script = ScriptedBatch(
        path=[("in_progress", 5)],
        poll_failure=ApplicationError(
            "get batch: gateway answered 401", type="AuthenticationError", non_retryable=True
        ),
    )
    with pytest.raises(WorkflowFailureError):
        await run_job(time_skipping_env, script, job())
    [cancel] = script.called("cancel_batch")
    assert cancel.batch_id == "batch_1"
    assert script.final_progress is None or script.final_progress.phase is JobPhase.DONE


async def test_a_gateway_refusing_past_the_patience_names_the_batch_and_attach_not_cancel(
    time_skipping_env,
):
    script = ScriptedBatch(
        path=[("in_progress", 5)],
        poll_failure=ApplicationError(
            "the gateway refuses this worker's key since 2026-01-01 00:00:00 UTC, longer than "
            "the worker's patience (3600 s, GATEWAY_REFUSAL_PATIENCE_SECONDS): get batch: "
            "gateway answered 401",
            type="GatewayRefuses",
            non_retryable=True,
        ),
    )
    with pytest.raises(WorkflowFailureError) as failure:
        await run_job(time_skipping_env, script, job())
    assert not script.called("cancel_batch"), "a batch it cannot read is not cancelled"
    cause = failure.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "GatewayRefuses"
    assert "giving up on batch batch_1 (in_progress" in cause.message
    assert "`python starter.py attach batch_1 in/batch.jsonl`" in cause.message
    assert "may still run and bill" in cause.message


async def test_a_cancel_during_create_waits_for_it_then_cancels_what_it_made(time_skipping_env):
    script = ScriptedBatch(create_hangs=True)
    async with script.serving(time_skipping_env) as start:
        handle = await start(job(heartbeat_timeout=timedelta(seconds=1)))
        await wait_for_call(script, "create_batch")
        await handle.cancel()
        with pytest.raises(WorkflowFailureError) as failure:
            await handle.result()
    assert is_cancelled_exception(failure.value.cause)
    names = [name for name, _ in script.calls]
    assert names.index("create_batch_cancelled") < names.index("cancel_batch")
    [cancel] = script.called("cancel_batch")
    assert cancel.batch_id is None, "looked up by job key: the create may have made one"


async def test_a_batch_that_failed_mid_run_keeps_what_finished(time_skipping_env):
    script = ScriptedBatch(
        path=[("validating", 1), ("in_progress", 2)],
        final="failed",
        errors=["[token_limit_exceeded] enqueued token limit reached"],
    )
    # The scripted batch reports output for terminal states with results.
    original = script.snapshot

    def snapshot(status: str, at: object = None):
        snap = original(status, at)  # type: ignore[arg-type]
        if status == "failed":
            return snap.model_copy(update={"output_file_id": "file-out"})
        return snap

    script.snapshot = snapshot  # type: ignore[method-assign]
    _, result = await run_job(time_skipping_env, script, job())
    assert result.status is JobStatus.COMPLETED_WITH_FAILURES
    assert "token_limit_exceeded" in (result.reason or "")
    [collect] = script.called("collect_results")
    assert collect.not_run_code == "batch_failed"


@pytest_asyncio.fixture
async def own_time_skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    """A server of its own: a cancel racing a running activity leaves the shared
    server's time-skipping lock held, which would stall every later test."""
    env = await start_time_skipping()
    try:
        yield env
    finally:
        await env.shutdown()


async def test_a_cancel_during_collect_still_writes_the_results(own_time_skipping_env):
    time_skipping_env = own_time_skipping_env
    # No unchanged polls, so no retry timers: the batch ends in real time.
    script = ScriptedBatch(
        path=[("validating", 0), ("in_progress", 0), ("finalizing", 0)], collect_hangs_once=True
    )
    async with script.serving(time_skipping_env) as start:
        handle = await start(job(heartbeat_timeout=timedelta(seconds=1)))
        await wait_for_call(script, "collect_results")
        await handle.cancel()
        await wait_for_cancel_handled(handle)
        script.release.set()
        result = await handle.result()
    # Not interrupted: it may be deleting the files a second collect would download.
    assert [name for name, _ in script.calls].count("collect_results") == 1
    assert not script.called("collect_results_cancelled")
    assert result.status is JobStatus.SUCCEEDED
    assert "results were collected" in (result.reason or "")
    assert result.gateway_files is not None
    assert result.gateway_files.deleted == ["file-1", "file-out"]


async def wait_for_cancel_handled(handle: Any) -> None:
    """Until the workflow has run the task that saw the cancel request."""
    for _ in range(200):
        events = (await handle.fetch_history()).events
        if any(
            e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCEL_REQUESTED for e in events
        ) and events[-1].event_type == (EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the cancel never reached the workflow")


async def test_an_input_that_does_not_validate_fails_the_workflow_not_hangs(time_skipping_env):
    """What a caller in another language sends, with a field the contract does not know."""
    script = ScriptedBatch()
    async with script.serving(time_skipping_env) as start:
        handle = await start(
            {"input_path": "in.jsonl", "completion_window": "48h"}, run="BatchJobWorkflow"
        )
        with pytest.raises(WorkflowFailureError) as failure:
            await asyncio.wait_for(handle.result(), 20)
    assert "completion_window" in str(failure.value.cause)
    assert script.calls == [], "nothing ran"


async def test_a_collect_that_fails_for_good_names_the_batch_and_its_files(time_skipping_env):
    """The batch has ended: the failure says it no longer bills and where its files are."""
    from tests.workflows.test_clean_up import run_on  # it imports this module

    @activity.defn(name="collect_results")
    async def collect_results(request: Any) -> Any:
        raise ApplicationError("results folder: permission denied", type="X", non_retryable=True)

    with pytest.raises(WorkflowFailureError) as failure:
        await run_on(time_skipping_env, ScriptedBatch(), job(), collect_results)

    message = str(failure.value.cause)
    assert "collecting batch batch_1" in message, message
    assert "output file file-out" in message and "no longer bills" in message
    assert "permission denied" in message
