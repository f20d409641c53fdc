"""Same-named stand-ins for the activities, scripted per run, for workflow tests and benchmarks.

They let the time-skipping server run a 24h batch in seconds: each poll that
finds the status unchanged fails as the real activity does, and Temporal's
retry timer (skipped) brings the next one.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from temporalio import activity
from temporalio.client import WorkflowHandle
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from contracts.job import BatchCounts, JobProgress, RequestTally, TokenTotals
from contracts.names import (
    ACTIVITY_AWAIT_STATUS_CHANGE,
    FAILURE_BATCH_NOT_CHANGED,
    FAILURE_FILE_NOT_PROCESSED,
    FAILURE_INPUT_FILE_UNUSABLE,
)
from contracts.steps import (
    AttachBatchRequest,
    AwaitChangeRequest,
    AwaitFileRequest,
    BatchSnapshot,
    CancelBatchRequest,
    CollectedResults,
    CollectResultsRequest,
    CreateBatchRequest,
    FileSnapshot,
    InputSummary,
    UploadedInput,
    UploadInputRequest,
    ValidateInputRequest,
)

REQUESTS = 5

Starter = Callable[..., Any]


@dataclass
class ScriptedBatch:
    """A batch that spends `polls` unchanged polls in each status, then moves on."""

    path: list[tuple[str, int]] = field(
        default_factory=lambda: [("validating", 1), ("in_progress", 3), ("finalizing", 1)]
    )
    final: str = "completed"
    errors: list[str] = field(default_factory=list)
    collected: CollectedResults = field(
        default_factory=lambda: CollectedResults(
            requests=RequestTally(total=REQUESTS, succeeded=REQUESTS),
            usage=TokenTotals(prompt_tokens=150, completion_tokens=300, total_tokens=450),
        )
    )
    batch_id: str = "batch_1"
    create_hangs: bool = False
    create_failure: ApplicationError | None = None
    # A create whose POST is already out: a cancel reaching it does not stop it.
    create_finishes_on_cancel: bool = False
    file_pending_polls: int = 0
    # The upload step found an earlier attempt's (or run's) upload and reused it.
    upload_adopted: bool = False
    file_error: str | None = None
    attach_failure: ApplicationError | None = None
    collect_hangs_once: bool = False
    poll_failure: ApplicationError | None = None
    calls: list[tuple[str, Any]] = field(default_factory=list)
    polls: int = 0
    cancel_requested: bool = False
    final_progress: JobProgress | None = None

    def snapshot(self, status: str) -> BatchSnapshot:
        done = REQUESTS if status in ("finalizing", "completed") else 0
        return BatchSnapshot(
            id=self.batch_id,
            status=status,
            input_file_id="file-1",
            output_file_id="file-out" if status in ("completed", "expired", "cancelled") else None,
            error_file_id=None,
            counts=BatchCounts(total=REQUESTS, completed=done),
            errors=self.errors if status == "failed" else [],
        )

    def next_status(self, status: str) -> str:
        if self.cancel_requested:
            return "cancelled"
        names = [name for name, _ in self.path]
        index = names.index(status)
        return names[index + 1] if index + 1 < len(names) else self.final

    def activities(self) -> list[Callable[..., Any]]:
        script = self

        @activity.defn(name="validate_input")
        async def validate_input(request: ValidateInputRequest) -> InputSummary:
            script.calls.append(("validate_input", request))
            return InputSummary(requests=REQUESTS, bytes=1000, model="gpt-4o-mini", sha256="0" * 64)

        @activity.defn(name="upload_input")
        async def upload_input(request: UploadInputRequest) -> UploadedInput:
            script.calls.append(("upload_input", request))
            return UploadedInput(
                file_id="file-1",
                bytes=request.bytes,
                adopted=script.upload_adopted,
                ready=script.file_pending_polls == 0 and script.file_error is None,
            )

        @activity.defn(name="create_batch")
        async def create_batch(request: CreateBatchRequest) -> BatchSnapshot:
            script.calls.append(("create_batch", request))
            if script.create_failure is not None:
                raise script.create_failure
            if script.create_hangs or script.create_finishes_on_cancel:
                try:
                    while True:
                        activity.heartbeat()
                        await asyncio.sleep(0.1)
                except asyncio.CancelledError:
                    script.calls.append(("create_batch_cancelled", request))
                    if not script.create_finishes_on_cancel:
                        raise
            return script.snapshot(script.path[0][0])

        @activity.defn(name="await_file_processed")
        async def await_file_processed(request: AwaitFileRequest) -> FileSnapshot:
            script.calls.append(("await_file_processed", request))
            if script.file_error is not None:
                raise ApplicationError(
                    f"the gateway failed to process input file {request.file_id}: "
                    f"{script.file_error}",
                    type=FAILURE_INPUT_FILE_UNUSABLE,
                    non_retryable=True,
                )
            if activity.info().attempt <= script.file_pending_polls:
                raise ApplicationError(
                    f"input file {request.file_id} still being processed by the gateway",
                    type=FAILURE_FILE_NOT_PROCESSED,
                    next_retry_delay=timedelta(seconds=request.poll_seconds),
                    category=ApplicationErrorCategory.BENIGN,
                )
            return FileSnapshot(id=request.file_id, status="processed", bytes=1000)

        @activity.defn(name="attach_batch")
        async def attach_batch(request: AttachBatchRequest) -> BatchSnapshot:
            script.calls.append(("attach_batch", request))
            if script.attach_failure is not None:
                raise script.attach_failure
            script.batch_id = request.batch_id
            return script.snapshot(script.path[0][0]).model_copy(update={"adopted": True})

        @activity.defn(name=ACTIVITY_AWAIT_STATUS_CHANGE)
        async def await_status_change(request: AwaitChangeRequest) -> BatchSnapshot:
            script.polls += 1
            if script.poll_failure is not None and request.known_status == "in_progress":
                raise script.poll_failure
            status = request.known_status
            stays = dict(script.path).get(status, 1)
            if script.cancel_requested and status == "cancelling":
                stays = 1
            if activity.info().attempt <= stays and not (
                script.cancel_requested and status != "cancelling"
            ):
                raise ApplicationError(
                    f"batch still {status}",
                    type=FAILURE_BATCH_NOT_CHANGED,
                    next_retry_delay=timedelta(seconds=request.poll_seconds),
                    category=ApplicationErrorCategory.BENIGN,
                )
            return script.snapshot(script.next_status(status))

        @activity.defn(name="collect_results")
        async def collect_results(request: CollectResultsRequest) -> CollectedResults:
            script.calls.append(("collect_results", request))
            if script.collect_hangs_once:
                script.collect_hangs_once = False
                try:
                    while True:
                        activity.heartbeat()
                        await asyncio.sleep(0.1)
                except asyncio.CancelledError:
                    script.calls.append(("collect_results_cancelled", request))
                    raise
            return script.collected

        @activity.defn(name="cancel_batch")
        async def cancel_batch(request: CancelBatchRequest) -> BatchSnapshot | None:
            script.calls.append(("cancel_batch", request))
            script.cancel_requested = True
            if request.batch_id is None:
                return None
            return script.snapshot("cancelling")

        return [
            await_file_processed,
            attach_batch,
            validate_input,
            upload_input,
            create_batch,
            await_status_change,
            collect_results,
            cancel_batch,
        ]

    @asynccontextmanager
    async def serving(self, env: WorkflowEnvironment) -> AsyncIterator[Starter]:
        """A worker with both workflows on these activities; yields a function starting one."""
        from workflows.batch_job import BatchJobWorkflow
        from workflows.fan_out import BatchFanOutWorkflow

        queue = f"test-{uuid.uuid4()}"
        async with Worker(
            env.client,
            task_queue=queue,
            workflows=[BatchJobWorkflow, BatchFanOutWorkflow],
            activities=self.activities(),
        ):

            async def start(
                request: Any, run: Any = BatchJobWorkflow.run, **options: Any
            ) -> WorkflowHandle[Any, Any]:
                return await env.client.start_workflow(
                    run, request, id=f"job-{uuid.uuid4()}", task_queue=queue, **options
                )

            yield start

    def called(self, name: str) -> list[Any]:
        return [request for called, request in self.calls if called == name]
