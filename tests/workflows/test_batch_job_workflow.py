"""BatchJobWorkflow under the time-skipping server, with scripted activities."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from contracts.job import (
    BatchJobInput,
    FanOutInput,
    JobPhase,
    JobStatus,
    PhaseDeadlines,
    RequestTally,
)
from contracts.steps import CollectedResults
from devstack.scripted import REQUESTS, ScriptedBatch
from workflows.batch_job import BatchJobWorkflow
from workflows.fan_out import BatchFanOutWorkflow


def job(**overrides: object) -> BatchJobInput:
    return BatchJobInput.model_validate(
        {"input_path": "in/batch.jsonl", "poll_interval": timedelta(minutes=10), **overrides}
    )


async def run_job(env: WorkflowEnvironment, script: ScriptedBatch, request: BatchJobInput):
    async with script.serving(env) as start:
        handle = await start(request)
        result = await handle.result()
        # Queried while the worker still runs: a closed workflow is replayed to answer.
        script.final_progress = await handle.query(BatchJobWorkflow.progress)
        return handle, result


async def test_a_24_hour_batch_finishes_with_a_short_history(time_skipping_env):
    script = ScriptedBatch(path=[("validating", 1), ("in_progress", 144), ("finalizing", 1)])
    before = await time_skipping_env.get_current_time()

    handle, result = await run_job(time_skipping_env, script, job())

    waited = await time_skipping_env.get_current_time() - before
    assert waited >= timedelta(hours=24)
    assert result.status is JobStatus.SUCCEEDED
    assert result.requests.succeeded == REQUESTS
    assert result.batch_id == "batch_1"
    assert result.output_path == "in/batch.output.jsonl"
    assert result.errors_path == "in/batch.errors.jsonl"
    assert result.usage.total_tokens == 450
    history = await handle.fetch_history()
    watches = [
        event
        for event in history.events
        if event.activity_task_scheduled_event_attributes.activity_type.name == "watch_batch"
    ]
    # One watch per status change, per 5 % of the requests (here 1 of 5), per 6 h refresh.
    assert len(watches) <= 3 + REQUESTS + 4, f"{len(watches)} watches for 144 polls"
    assert len(history.events) < 100, f"{len(history.events)} events for a 24h wait"


async def test_the_batch_is_created_once_and_tagged_with_the_job_key(time_skipping_env):
    script = ScriptedBatch()
    handle, _ = await run_job(time_skipping_env, script, job(metadata={"team": "catalog"}))
    [create] = script.called("create_batch")
    assert create.metadata == {"team": "catalog"}
    assert create.job_key.startswith(handle.id + "/")
    [upload] = script.called("upload_input")
    assert upload.job_key == create.job_key


async def test_failed_requests_inside_a_completed_batch_are_not_a_success(time_skipping_env):
    script = ScriptedBatch(
        collected=CollectedResults(
            requests=RequestTally(
                total=REQUESTS, succeeded=3, failed=2, failures_by_code={"http_500": 2}
            ),
            usage={},
        )
    )
    _, result = await run_job(time_skipping_env, script, job())
    assert result.status is JobStatus.COMPLETED_WITH_FAILURES
    assert result.requests.failed == 2
    assert "2 of 5 requests did not succeed" in (result.reason or "")


async def test_a_batch_the_gateway_rejects_fails_the_job_with_its_line_numbers(time_skipping_env):
    script = ScriptedBatch(
        path=[("validating", 2)],
        final="failed",
        errors=["line 3: [duplicate_custom_id] custom_id 'a' is duplicated"],
    )
    with pytest.raises(WorkflowFailureError) as failure:
        await run_job(time_skipping_env, script, job())
    cause = failure.value.cause
    assert isinstance(cause, ApplicationError)
    assert cause.type == "BatchFailed"
    assert "line 3" in cause.message
    assert not script.called("collect_results")


async def test_an_expired_batch_still_collects_what_finished(time_skipping_env):
    script = ScriptedBatch(path=[("validating", 1), ("in_progress", 150)], final="expired")
    _, result = await run_job(time_skipping_env, script, job())
    assert result.status is JobStatus.EXPIRED
    [collect] = script.called("collect_results")
    assert collect.not_run_code == "batch_expired"
    assert collect.batch.output_file_id == "file-out"


async def test_a_batch_stuck_in_validating_is_cancelled_at_its_deadline(time_skipping_env):
    script = ScriptedBatch(path=[("validating", 10**6)])
    _, result = await run_job(
        time_skipping_env,
        script,
        job(deadlines=PhaseDeadlines(validating=timedelta(hours=2))),
    )
    waited = result.finished_at - result.started_at
    assert result.status is JobStatus.DEADLINE_EXCEEDED
    assert "validating" in (result.reason or "")
    assert timedelta(hours=2) <= waited < timedelta(hours=4)
    [cancel] = script.called("cancel_batch")
    assert cancel.batch_id == "batch_1"
    assert script.called("collect_results")


async def test_cancelling_the_workflow_cancels_the_batch_and_keeps_results(time_skipping_env):
    script = ScriptedBatch(path=[("in_progress", 10**6)])
    async with script.serving(time_skipping_env) as start:
        handle = await start(job())
        # Time stands still outside result(): the batch stays in_progress.
        for _ in range(200):
            progress = await handle.query(BatchJobWorkflow.progress)
            if progress.batch_status == "in_progress":
                break
            await asyncio.sleep(0.05)
        assert progress.batch_status == "in_progress"
        assert progress.phase is JobPhase.WAITING
        await handle.cancel()
        result = await handle.result()
    assert result.status is JobStatus.CANCELLED
    assert result.batch_status == "cancelled"
    [cancel] = script.called("cancel_batch")
    assert cancel.batch_id == "batch_1"
    [collect] = script.called("collect_results")
    assert collect.not_run_code == "batch_cancelled"


async def test_progress_query_reports_phase_and_counts(time_skipping_env):
    script = ScriptedBatch()
    await run_job(time_skipping_env, script, job())
    progress = script.final_progress
    assert progress is not None
    assert progress.phase is JobPhase.DONE
    assert progress.batch_id == "batch_1"
    assert progress.batch_status == "completed"
    assert progress.counts is not None and progress.counts.completed == REQUESTS


async def test_a_parent_runs_jobs_as_children(time_skipping_env):
    script = ScriptedBatch()
    async with script.serving(time_skipping_env) as start:
        parent = await start(
            FanOutInput(jobs=[job(input_path="a.jsonl"), job(input_path="b.jsonl")]),
            run=BatchFanOutWorkflow.run,
        )
        result = await parent.result()
    assert [r.output_path for r in result.results] == ["a.output.jsonl", "b.output.jsonl"]
    assert all(r.status is JobStatus.SUCCEEDED for r in result.results)
    assert result.failed_jobs == {}
