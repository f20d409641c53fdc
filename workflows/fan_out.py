"""An example parent: runs several batch jobs as child workflows and gathers their results.

At most ``max_concurrent`` children run at once, the next starting as one
ends; the run continues as new after ``children_per_run`` children (or when
Temporal suggests it), between children, so its history stays bounded.
A failure is keyed by the child's workflow id, never by its input, so two
jobs on the same input are told apart. workflows/sharded_job.py is the same
shape for one input larger than a batch.
"""

from __future__ import annotations

import asyncio

from temporalio import workflow
from temporalio.exceptions import ChildWorkflowError
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from pydantic import ValidationError

    from contracts.job import BatchJobInput, FanOutInput, FanOutProgress, FanOutResult
    from contracts.names import SHARDED_WORKFLOW_NAME

from workflows.batch_job import BatchJobWorkflow
from workflows.carried import own_carried


# An input that does not validate fails the workflow with pydantic's message,
# instead of failing its first task over and over (a workflow that hangs).
@workflow.defn(name=SHARDED_WORKFLOW_NAME, failure_exception_types=[ValidationError])
class BatchFanOutWorkflow:
    def __init__(self) -> None:
        self._in_flight: dict[int, asyncio.Task[None]] = {}
        self._ended = 0
        self._unexpected: list[BaseException] = []

    @workflow.run
    async def run(self, request: FanOutInput) -> FanOutResult:
        try:
            return await self._run(request)
        except asyncio.CancelledError:
            # Each child cancels its batch and keeps what finished.
            for task in self._in_flight.values():
                task.cancel()
            await asyncio.gather(*self._in_flight.values(), return_exceptions=True)
            raise

    async def _run(self, request: FanOutInput) -> FanOutResult:
        progress = own_carried(request.carried) or FanOutProgress()
        started = 0
        while progress.next_job < len(request.jobs) or self._in_flight:
            if self._unexpected:
                raise self._unexpected[0]
            due = started >= request.children_per_run or (
                workflow.info().is_continue_as_new_suggested()
            )
            if due and not self._in_flight:
                workflow.continue_as_new(request.model_copy(update={"carried": progress}))
            while (
                not due
                and progress.next_job < len(request.jobs)
                and len(self._in_flight) < request.max_concurrent
            ):
                index = progress.next_job
                progress.next_job += 1
                started += 1
                self._in_flight[index] = asyncio.create_task(
                    self._child(progress, index, request.jobs[index])
                )
            await self._one_child_ends()
        if self._unexpected:
            raise self._unexpected[0]
        ordered = [progress.results[i] for i in sorted(progress.results)]
        return FanOutResult(results=ordered, failed_jobs=progress.failed_jobs)

    async def _one_child_ends(self) -> None:
        ended = self._ended
        await workflow.wait_condition(lambda: self._ended > ended)

    async def _child(self, progress: FanOutProgress, index: int, job: BatchJobInput) -> None:
        child_id = f"{workflow.info().workflow_id}-job-{index}"
        try:
            progress.results[index] = await workflow.execute_child_workflow(
                BatchJobWorkflow.run,
                job,
                id=child_id,
                # A parent terminated or timed out asks its children to cancel, so
                # each cancels its batch and keeps what finished; none is killed.
                parent_close_policy=ParentClosePolicy.REQUEST_CANCEL,
            )
        except ChildWorkflowError as exc:
            progress.failed_jobs[child_id] = str(exc.cause or exc)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._unexpected.append(exc)  # raised by the run, as before
        finally:
            self._in_flight.pop(index, None)
            self._ended += 1
