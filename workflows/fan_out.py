"""An example parent: runs several batch jobs as child workflows and gathers their results.

It is also the shape of the planned sharding of inputs larger than one batch:
BatchJobWorkflow stays the unit that talks to one batch.
"""

from __future__ import annotations

import asyncio

from temporalio import workflow
from temporalio.exceptions import ChildWorkflowError
from temporalio.workflow import ParentClosePolicy

with workflow.unsafe.imports_passed_through():
    from pydantic import ValidationError

    from contracts.job import BatchJobResult, FanOutInput, FanOutResult
    from contracts.names import SHARDED_WORKFLOW_NAME

from workflows.batch_job import BatchJobWorkflow


# An input that does not validate fails the workflow with pydantic's message,
# instead of failing its first task over and over (a workflow that hangs).
@workflow.defn(name=SHARDED_WORKFLOW_NAME, failure_exception_types=[ValidationError])
class BatchFanOutWorkflow:
    @workflow.run
    async def run(self, request: FanOutInput) -> FanOutResult:
        parent = workflow.info().workflow_id
        children = [
            workflow.execute_child_workflow(
                BatchJobWorkflow.run,
                job,
                id=f"{parent}-job-{index}",
                # A parent terminated or timed out asks its children to cancel, so
                # each cancels its batch and keeps what finished; none is killed.
                parent_close_policy=ParentClosePolicy.REQUEST_CANCEL,
            )
            for index, job in enumerate(request.jobs)
        ]
        outcomes = await asyncio.gather(*children, return_exceptions=True)
        results: list[BatchJobResult] = []
        failed: dict[str, str] = {}
        for job, outcome in zip(request.jobs, outcomes, strict=True):
            if isinstance(outcome, BatchJobResult):
                results.append(outcome)
            elif isinstance(outcome, ChildWorkflowError):
                failed[job.input_path] = str(outcome.cause or outcome)
            elif isinstance(outcome, BaseException):
                raise outcome
        return FanOutResult(results=results, failed_jobs=failed)
