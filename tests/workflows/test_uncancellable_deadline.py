"""A one-batch job past a deadline on a gateway that will not cancel its batch.

The batch runs and bills on whatever the job does: the job waits for it to
end, says so while it waits, and collects what it ran.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity

from contracts.job import JobProgress, JobStatus, PhaseDeadlines
from contracts.names import QUERY_PROGRESS
from contracts.steps import BatchWatch, WatchBatchRequest
from devstack.scripted import REQUESTS, ScriptedBatch
from tests.workflows.test_batch_job_workflow import job

HOUR_OF_POLLS = 6  # polls of 10 minutes


def progress_recorder(
    script: ScriptedBatch, seen: list[JobProgress], client_of: list[object]
) -> object:
    """A watch_batch that first reads the job's progress as `status` would, then watches."""

    @activity.defn(name="watch_batch")
    async def watch_batch(request: WatchBatchRequest) -> BatchWatch:
        client = client_of[0]
        handle = client.get_workflow_handle(activity.info().workflow_id)  # type: ignore[attr-defined]
        seen.append(await handle.query(QUERY_PROGRESS, result_type=JobProgress))
        return await script.watch(request)

    return watch_batch


async def test_a_deadline_that_cannot_cancel_waits_for_the_batch_and_collects(
    time_skipping_env,
):
    # In progress for 5 hours with a 1-hour deadline; the gateway has no cancel route.
    script = ScriptedBatch(
        path=[("validating", 1), ("in_progress", 5 * HOUR_OF_POLLS), ("finalizing", 1)],
        cancel_unsupported=True,
    )
    seen: list[JobProgress] = []
    script_activities = script.activities
    recorder = progress_recorder(script, seen, [time_skipping_env.client])
    script.activities = lambda *replacing: script_activities(*replacing, recorder)  # type: ignore[method-assign]
    async with script.serving(time_skipping_env) as start:
        handle = await start(job(deadlines=PhaseDeadlines(in_progress=timedelta(hours=1))))
        result = await handle.result()

    assert result.status is JobStatus.DEADLINE_EXCEEDED
    assert result.batch_status == "completed", "waited for the batch to end"
    assert result.requests.succeeded == REQUESTS, "what it ran is kept"
    assert "could not cancel" in (result.reason or "")
    assert "ran to its end" in (result.reason or "")
    assert len(script.called("cancel_batch")) == 1
    [collect] = script.called("collect_results")
    assert collect.batch.status == "completed"
    # While it waited past the deadline, the job said why and showed no deadline.
    waiting = [p for p in seen if p.reason and "waiting for it to end" in p.reason]
    assert waiting, [p.reason for p in seen]
    assert all(p.deadline is None for p in waiting)


async def test_a_batch_still_cancelling_past_its_deadline_is_waited_for(time_skipping_env):
    # The cancel is accepted, but the batch stays cancelling for 5 hours (deadline 1 hour).
    script = ScriptedBatch(
        path=[("validating", 1), ("in_progress", 10**6)], cancelling_for=timedelta(hours=5)
    )
    deadlines = PhaseDeadlines(in_progress=timedelta(hours=1), cancelling=timedelta(hours=1))
    async with script.serving(time_skipping_env) as start:
        handle = await start(job(deadlines=deadlines))
        result = await handle.result()

    assert result.status is JobStatus.DEADLINE_EXCEEDED
    assert result.batch_status == "cancelled", "collected once the gateway settled it"
    assert "still cancelling after 1:00:00" in (result.reason or "")
    assert result.finished_at - result.started_at > timedelta(hours=6)
    [collect] = script.called("collect_results")
    assert collect.batch.status == "cancelled"
