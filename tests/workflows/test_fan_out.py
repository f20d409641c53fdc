"""The example fan-out parent: a window of children, continue-as-new, failures kept apart."""

from __future__ import annotations

from temporalio.testing import WorkflowEnvironment

from contracts.job import FanOutInput, JobStatus
from devstack.scripted import ScriptedBatch
from tests.workflows.test_batch_job_workflow import job
from workflows.fan_out import BatchFanOutWorkflow


async def test_many_jobs_run_in_a_window_and_continue_as_new_in_job_order(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    script = ScriptedBatch()
    jobs = [job(input_path=f"in-{n}.jsonl") for n in range(10)]
    async with script.serving(time_skipping_env) as start:
        parent = await start(
            FanOutInput(jobs=jobs, max_concurrent=3, children_per_run=4),
            run=BatchFanOutWorkflow.run,
        )
        result = await parent.result()
        first_run = time_skipping_env.client.get_workflow_handle(
            parent.id, run_id=parent.result_run_id
        )
        history = await first_run.fetch_history()
    assert [r.output_path for r in result.results] == [f"in-{n}.output.jsonl" for n in range(10)]
    assert all(r.status is JobStatus.SUCCEEDED for r in result.results)
    assert history.events[-1].HasField("workflow_execution_continued_as_new_event_attributes")
    started = [
        e
        for e in history.events
        if e.HasField("start_child_workflow_execution_initiated_event_attributes")
    ]
    assert len(started) == 4, "the first run started children_per_run children, then moved on"


async def test_two_failed_jobs_on_the_same_input_are_both_reported(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    script = ScriptedBatch(path=[("validating", 1)], final="failed", errors=["[bad] no"])
    same = job(
        input_path="same.jsonl",
        output_path="out-{workflow_id}.jsonl",
        errors_path="err-{workflow_id}.jsonl",
    )
    async with script.serving(time_skipping_env) as start:
        parent = await start(FanOutInput(jobs=[same, same]), run=BatchFanOutWorkflow.run)
        result = await parent.result()
    assert sorted(result.failed_jobs) == [f"{parent.id}-job-0", f"{parent.id}-job-1"]
    assert all("[bad] no" in why for why in result.failed_jobs.values())
