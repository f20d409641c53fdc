"""A stand-in for the next release of the worker: the same workflow type, one more
step behind workflow.patched, and one more optional field in a step result.

Its own module, free of test imports, so the workflow sandbox can load it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from temporalio import activity, workflow

with workflow.unsafe.imports_passed_through():
    from contracts.job import BatchJobResult
    from contracts.names import ACTIVITY_AWAIT_STATUS_CHANGE, ACTIVITY_WATCH_BATCH, WORKFLOW_NAME
    from contracts.steps import (
        AwaitChangeRequest,
        BatchSnapshot,
        BatchWatch,
        InputSummary,
        UploadedInput,
        WatchBatchRequest,
    )

from workflows.batch_job import BatchJobWorkflow, JobArgument

PATCH_SETTLE_AFTER_UPLOAD = "test-settle-after-upload-v1"


class NextBatchSnapshot(BatchSnapshot):
    """The step result as the next release writes it: one field more."""

    region: str | None = None


NEXT_RELEASE_OPTION = "next_release_option"
"""An input field the next release adds; its parents send it to their children."""


@workflow.defn(name=WORKFLOW_NAME)
class NextBatchJobWorkflow(BatchJobWorkflow):
    @workflow.run
    async def run(self, job: JobArgument) -> BatchJobResult:
        if isinstance(job, dict):  # a field it knows (and, as a stand-in, does nothing with)
            job = {name: value for name, value in job.items() if name != NEXT_RELEASE_OPTION}
        return await super().run(job)

    async def _upload(self, summary: InputSummary) -> UploadedInput:
        uploaded = await super()._upload(summary)
        # The release's one change of commands: a pause after each upload. A job
        # already past its upload replays without it.
        await self._settle()
        return uploaded

    async def _submit(self) -> tuple[InputSummary, BatchSnapshot]:
        submitted = await super()._submit()
        await self._settle()  # a new job uploads in its submit step
        return submitted

    async def _settle(self) -> None:
        if workflow.patched(PATCH_SETTLE_AFTER_UPLOAD):
            await workflow.sleep(timedelta(seconds=1))


@workflow.defn(name="NextReleaseParent")
class NextReleaseParent:
    """A parent on the next release: its child's input carries the new field."""

    @workflow.run
    async def run(self, order: dict[str, Any]) -> BatchJobResult:
        job = {**order["job"], NEXT_RELEASE_OPTION: 1}
        return await workflow.execute_child_workflow(
            WORKFLOW_NAME,
            job,
            id=order["child_id"],
            task_queue=order["task_queue"],
            result_type=BatchJobResult,
        )


class NextBatchWatch(BatchWatch):
    batch: NextBatchSnapshot


def with_region(activities: list[Callable[..., Any]]) -> list[Callable[..., Any]]:
    """These activities, their status polls answering the next release's snapshot."""
    [poll] = [fn for fn in activities if fn.__name__ == ACTIVITY_AWAIT_STATUS_CHANGE]
    [watch] = [fn for fn in activities if fn.__name__ == ACTIVITY_WATCH_BATCH]

    @activity.defn(name=ACTIVITY_AWAIT_STATUS_CHANGE)
    async def await_status_change(request: AwaitChangeRequest) -> NextBatchSnapshot:
        changed: BatchSnapshot = await poll(request)
        return NextBatchSnapshot(**changed.model_dump(), region="swedencentral")

    @activity.defn(name=ACTIVITY_WATCH_BATCH)
    async def watch_batch(request: WatchBatchRequest) -> NextBatchWatch:
        seen: BatchWatch = await watch(request)
        batch = NextBatchSnapshot(**seen.batch.model_dump(), region="swedencentral")
        return NextBatchWatch(**{**seen.model_dump(), "batch": batch})

    return [fn for fn in activities if fn not in (poll, watch)] + [await_status_change, watch_batch]
