"""Same-named stand-ins for the activities, scripted per run, for workflow tests and benchmarks.

They let the time-skipping server run a 24h batch in seconds. The batch lives
on the server's clock: it spends `polls` poll intervals in each status from
the moment it was created, and reports the gateway's timestamps of each phase.

The real watch_batch loops inside one attempt until there is news. The test
server stops its clock while any activity runs or waits for a worker, so the
fake cannot wait inside: with nothing to report it ends its attempt with a
retry delay of one poll interval (a retry timer is what the server skips).
The attempt counter that climbs is the fake's; tests of what a person sees
use `hold_at`, which waits inside the attempt as the real activity does.
An outage (no worker for days) is the delay before such a retry.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from temporalio import activity
from temporalio.client import WorkflowHandle
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from contracts.job import BatchCounts, GatewayFiles, JobProgress, RequestTally, TokenTotals
from contracts.names import (
    ACTIVITY_AWAIT_STATUS_CHANGE,
    ACTIVITY_CLEAN_UP,
    ACTIVITY_SUBMIT_BATCH,
    ACTIVITY_VALIDATE_AND_UPLOAD,
    ACTIVITY_WATCH_BATCH,
    FAILURE_BATCH_NOT_CHANGED,
    FAILURE_FILE_NOT_PROCESSED,
    FAILURE_INPUT_FILE_UNUSABLE,
    FAILURE_QUOTA_REFUSED,
)
from contracts.steps import (
    AttachBatchRequest,
    AwaitChangeRequest,
    AwaitFileRequest,
    BatchSnapshot,
    BatchWatch,
    CancelBatchRequest,
    CleanUpRequest,
    CollectedResults,
    CollectResultsRequest,
    CreateBatchRequest,
    FileSnapshot,
    InputSummary,
    QuotaRefusal,
    SubmitBatchRequest,
    SubmittedBatch,
    UploadedInput,
    UploadInputRequest,
    ValidateAndUploadRequest,
    ValidatedUpload,
    ValidateInputRequest,
    WatchBatchRequest,
)

REQUESTS = 5
# The fake's own retries, which stand for time passing inside the real watch.
FAKE_CLOCK = "FakeClockAdvance"

Starter = Callable[..., Any]


async def validate_and_upload_by_parts(
    request: ValidateAndUploadRequest,
    validate_input: Callable[[ValidateInputRequest], Awaitable[InputSummary]],
    upload_input: Callable[[UploadInputRequest], Awaitable[UploadedInput]],
) -> ValidatedUpload:
    """validate_and_upload from scripted parts: validate, then upload what was validated."""
    summary = await validate_input(request.validation)
    uploaded = await upload_input(request.upload_request(summary))
    return ValidatedUpload(summary=summary, uploaded=uploaded)


async def submit_by_parts(
    request: SubmitBatchRequest,
    validate_and_upload: Callable[[ValidateAndUploadRequest], Awaitable[ValidatedUpload]],
    create_batch: Callable[[CreateBatchRequest], Awaitable[BatchSnapshot]],
) -> SubmittedBatch:
    """submit_batch from scripted parts, with the real one's contract: no batch while
    the upload is not ready, a quota refusal returned, other failures carrying the
    checkpoint as their last detail."""
    checkpoint = await validate_and_upload(
        ValidateAndUploadRequest(validation=request.validation, job_key=request.job_key)
    )
    done = SubmittedBatch(summary=checkpoint.summary, uploaded=checkpoint.uploaded)
    assert done.uploaded is not None
    if not done.uploaded.ready:
        return done
    try:
        batch = await create_batch(request.create_request(done.uploaded))
    except ApplicationError as exc:
        if exc.type == FAILURE_QUOTA_REFUSED:
            return done.model_copy(update={"refused": QuotaRefusal.of(exc.details)})
        raise ApplicationError(
            exc.message,
            *exc.details,
            done.model_dump(mode="json"),
            type=exc.type,
            non_retryable=exc.non_retryable,
        ) from None
    return done.model_copy(update={"batch": batch})


LATE_QUOTA_REFUSAL = (
    "[token_limit_exceeded] Enqueued token limit reached for gpt-4o-mini in organization "
    "org-x. Limit: 2,000,000 enqueued tokens. Please try again once some in_progress batches "
    "have been completed."
)


@dataclass
class ScriptedBatch:
    """A batch that spends `polls` unchanged polls in each status, then moves on."""

    path: list[tuple[str, int]] = field(
        default_factory=lambda: [("validating", 1), ("in_progress", 3), ("finalizing", 1)]
    )
    final: str = "completed"
    # A batch that fails mid-run still reports the output of what finished.
    output_on_failure: bool = False
    # A gateway without a cancel route: a cancel leaves the batch running.
    cancel_unsupported: bool = False
    # A cancelled batch stays cancelling this long (the watch sees it) before it is cancelled.
    cancelling_for: timedelta = timedelta(0)
    cancelled_at: datetime | None = None
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
    # The attach reads the batch until `release` is set (a cancel lands meanwhile).
    attach_holds: bool = False
    # The first creates are refused for the enqueued-token quota (nothing made).
    create_quota_refusals: int = 0
    collect_hangs_once: bool = False
    poll_failure: ApplicationError | None = None
    # No worker for this long: before the first watch in this status runs, or
    # before collection's second attempt (the first one's worker died).
    outage_in: str | None = None
    outage: timedelta = timedelta(days=3)
    collect_outage: timedelta | None = None
    # Whether the gateway reports when each phase began (Azure and OpenAI do).
    timestamps: bool = True
    # Hold the watch in this status at this many finished requests, inside one
    # attempt and heartbeating, until `release` is set.
    hold_at: tuple[str, int] | None = None
    release: asyncio.Event = field(default_factory=asyncio.Event)
    # Watches in in_progress that report a gateway failing (while the job lets them).
    gateway_errors: int = 0
    # Hold a new status until the watch has run its settle time, as the real watch does.
    # Off by default: the test server's clock moves only while a test awaits a result.
    settles: bool = False
    calls: list[tuple[str, Any]] = field(default_factory=list)
    polls: int = 0
    cancel_requested: bool = False
    final_progress: JobProgress | None = None
    created_at: datetime | None = None
    poll: timedelta = timedelta(minutes=10)
    # The end-of-job clean-up fails on every attempt with this.
    clean_up_failure: ApplicationError | None = None
    # The collect is an older worker's: it deletes nothing, whatever the request names.
    collect_deletes_nothing: bool = False
    # Patches the worker leaves inactive for new jobs: the path a job started before them runs.
    patches_off: tuple[str, ...] = ()
    # The first N batches made fail unrun at the end of their path for the enqueued-token
    # quota (OpenAI's late refusal); each batch made is then batch_<n>.
    late_quota_refusals: int = 0
    refused_late: bool = False
    # The gateway's words of a refused create, and the estimate validation reports.
    quota_refusal_message: str = "Enqueued token limit reached for gpt-4o-mini"
    input_tokens: int | None = None
    largest_request_tokens: int | None = None

    def snapshot(self, status: str, at: datetime | None = None) -> BatchSnapshot:
        if self.refused_late and status == self.final:
            return BatchSnapshot(
                id=self.batch_id,
                status="failed",
                input_file_id="file-1",
                counts=BatchCounts(total=REQUESTS),
                errors=[LATE_QUOTA_REFUSAL],
            )
        done = REQUESTS if status in ("finalizing", "completed") else 0
        if status == "in_progress" and at is not None:
            start, end = self.phase_window("in_progress")
            if end > start:
                done = min(REQUESTS, int(REQUESTS * (at - start) / (end - start)))
        stamps: dict[str, int | None] = {}
        if self.timestamps and self.created_at is not None:
            stamps["created_at"] = int(self.created_at.timestamp())
            for name in ("in_progress", "finalizing"):
                began = self.phase_window(name)[0]
                if name in dict(self.path) and (at is None or began <= at):
                    stamps[f"{name}_at"] = int(began.timestamp())
        return BatchSnapshot(
            id=self.batch_id,
            status=status,
            input_file_id="file-1",
            output_file_id=(
                "file-out"
                if status in ("completed", "expired", "cancelled")
                or (status == "failed" and self.output_on_failure)
                else None
            ),
            error_file_id=None,
            counts=BatchCounts(total=REQUESTS, completed=done),
            errors=self.errors if status == "failed" else [],
            **stamps,
        )

    def phase_window(self, status: str) -> tuple[datetime, datetime]:
        """When the scripted batch enters and leaves a status of its path."""
        assert self.created_at is not None
        start = self.created_at
        for name, polls in self.path:
            end = start + self.poll * min(polls, 10**5)
            if name == status:
                return start, end
            start = end
        return start, start

    def status_at(self, at: datetime) -> str:
        if self.cancel_requested:
            settled = self.cancelled_at is None or at >= self.cancelled_at + self.cancelling_for
            return "cancelled" if settled else "cancelling"
        for name, _ in self.path:
            if at < self.phase_window(name)[1]:
                return name
        return self.final

    def next_status(self, status: str) -> str:
        if self.cancel_requested:
            return "cancelled"
        names = [name for name, _ in self.path]
        index = names.index(status)
        return names[index + 1] if index + 1 < len(names) else self.final

    def activities(self, *replacing: Callable[..., Any]) -> list[Callable[..., Any]]:
        """The scripted activities; ``replacing`` stand in for those of their function's
        name, inside the scripted submit_batch too."""
        script = self

        @activity.defn(name="validate_input")
        async def validate_input(request: ValidateInputRequest) -> InputSummary:
            script.calls.append(("validate_input", request))
            return InputSummary(
                requests=REQUESTS,
                bytes=1000,
                model="gpt-4o-mini",
                sha256="0" * 64,
                input_tokens=script.input_tokens,
                largest_request_tokens=script.largest_request_tokens,
                largest_request_id="req-7" if script.largest_request_tokens else None,
            )

        @activity.defn(name="upload_input")
        async def upload_input(request: UploadInputRequest) -> UploadedInput:
            script.calls.append(("upload_input", request))
            return UploadedInput(
                file_id="file-1",
                bytes=request.bytes,
                adopted=script.upload_adopted,
                ready=script.file_pending_polls == 0 and script.file_error is None,
            )

        @activity.defn(name=ACTIVITY_VALIDATE_AND_UPLOAD)
        async def validate_and_upload(request: ValidateAndUploadRequest) -> ValidatedUpload:
            # Recorded as its two parts, as the tests of either step read them.
            return await validate_and_upload_by_parts(request, validate_input, upload_input)

        @activity.defn(name="create_batch")
        async def create_batch(request: CreateBatchRequest) -> BatchSnapshot:
            script.calls.append(("create_batch", request))
            if script.create_failure is not None:
                raise script.create_failure
            if len(script.called("create_batch")) <= script.create_quota_refusals:
                said = script.quota_refusal_message
                raise ApplicationError(
                    f"the gateway refused the batch for its enqueued-token quota "
                    f"[token_limit_exceeded]: {said}",
                    said,
                    None,
                    type=FAILURE_QUOTA_REFUSED,
                    non_retryable=True,
                )
            script.created_at = activity.info().current_attempt_scheduled_time
            if script.late_quota_refusals:
                made = len(script.called("create_batch")) - script.create_quota_refusals
                script.refused_late = made <= script.late_quota_refusals
                script.batch_id = f"batch_{made}"
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

        @activity.defn(name=ACTIVITY_SUBMIT_BATCH)
        async def submit_batch(request: SubmitBatchRequest) -> SubmittedBatch:
            # Recorded as its parts, as the tests of each step read them.
            parts: dict[str, Callable[..., Any]] = {
                "validate_and_upload": validate_and_upload,
                "create_batch": create_batch,
            }
            parts.update((fn.__name__, fn) for fn in replacing if fn.__name__ in parts)
            return await submit_by_parts(
                request, parts["validate_and_upload"], parts["create_batch"]
            )

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
            while script.attach_holds and not script.release.is_set():
                activity.heartbeat()
                await asyncio.sleep(0.05)
            script.batch_id = request.batch_id
            # The batch was made by hand before the job: its clock starts now.
            script.created_at = script.created_at or activity.info().current_attempt_scheduled_time
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

        @activity.defn(name=ACTIVITY_WATCH_BATCH)
        async def watch_batch(request: WatchBatchRequest) -> BatchWatch:
            return await script.watch(request)

        @activity.defn(name="collect_results")
        async def collect_results(request: CollectResultsRequest) -> CollectedResults:
            script.calls.append(("collect_results", request))
            if script.collect_outage is not None and activity.info().attempt == 1:
                raise ApplicationError(
                    "worker lost", type="WorkerLost", next_retry_delay=script.collect_outage
                )
            if script.collect_hangs_once:
                # Until cancelled, or released (a job that lets its collect finish).
                script.collect_hangs_once = False
                try:
                    while not script.release.is_set():
                        activity.heartbeat()
                        await asyncio.sleep(0.1)
                except asyncio.CancelledError:
                    script.calls.append(("collect_results_cancelled", request))
                    raise
            if request.gateway_file_ids is not None and not script.collect_deletes_nothing:
                deleted = GatewayFiles(deleted=list(request.gateway_file_ids))
                return script.collected.model_copy(update={"gateway_files": deleted})
            return script.collected

        @activity.defn(name="cancel_batch")
        async def cancel_batch(request: CancelBatchRequest) -> BatchSnapshot | None:
            script.calls.append(("cancel_batch", request))
            if request.batch_id is None:
                script.cancel_requested = True
                return None
            if script.cancel_unsupported:
                # Kong without a cancel route: the batch runs on, as the gateway last said.
                now = activity.info().current_attempt_scheduled_time
                return script.snapshot(script.status_at(now), now)
            script.cancel_requested = True
            script.cancelled_at = activity.info().current_attempt_scheduled_time
            return script.snapshot("cancelling")

        @activity.defn(name=ACTIVITY_CLEAN_UP)
        async def clean_up(request: CleanUpRequest) -> GatewayFiles:
            script.calls.append(("clean_up", request))
            if script.clean_up_failure is not None:
                raise script.clean_up_failure
            return GatewayFiles(deleted=request.gateway_file_ids)

        scripted: list[Callable[..., Any]] = [
            await_file_processed,
            attach_batch,
            validate_input,
            upload_input,
            create_batch,
            await_status_change,
            watch_batch,
            collect_results,
            cancel_batch,
            clean_up,
            validate_and_upload,
            submit_batch,
        ]
        replaced = {fn.__name__ for fn in replacing}
        return [fn for fn in scripted if fn.__name__ not in replaced] + list(replacing)

    async def watch(self, request: WatchBatchRequest) -> BatchWatch:
        self.calls.append(("watch_batch", request))
        self.polls += 1
        self.poll = timedelta(seconds=request.poll_seconds)
        known = request.batch
        info = activity.info()
        if known.status == self.outage_in and info.attempt == 1:
            self.outage_in = None
            raise ApplicationError("worker lost", type="WorkerLost", next_retry_delay=self.outage)
        if self.poll_failure is not None and known.status == "in_progress":
            raise self.poll_failure
        if (
            self.gateway_errors
            and known.status == "in_progress"
            and request.report_error_after_seconds is not None
        ):
            self.gateway_errors -= 1
            return BatchWatch(batch=known, gateway_error="get batch: gateway answered 503")
        if self.hold_at is not None and known.status == self.hold_at[0]:
            return await self._hold(request)
        now = info.current_attempt_scheduled_time
        batch = self.snapshot(self.status_at(now), now)
        step = request.report_every
        settle = request.report_changes_after_seconds if self.settles else None
        news = batch.status != known.status or (
            step is not None and batch.finished - known.finished >= step
        )
        settled = settle is None or (now - info.scheduled_time).total_seconds() >= settle
        if batch.status.is_terminal or now >= request.return_by or (news and settled):
            return BatchWatch(batch=batch, polls=info.attempt)
        raise ApplicationError(
            f"fake clock: still {batch.status}",
            type=FAKE_CLOCK,
            next_retry_delay=self.poll,
            category=ApplicationErrorCategory.BENIGN,
        )

    async def _hold(self, request: WatchBatchRequest) -> BatchWatch:
        """Report one more finished request per watch up to the hold, then wait there."""
        assert self.hold_at is not None
        held = self.hold_at[1]
        known = request.batch
        finished = min(known.finished + 1, held)
        counts = BatchCounts(total=REQUESTS, completed=finished)
        seen = known.model_copy(update={"counts": counts})
        if finished > known.finished:
            return BatchWatch(batch=seen, polls=1)
        while not self.release.is_set():
            activity.heartbeat(BatchWatch(batch=seen, polls=1))
            await asyncio.sleep(0.1)
        return BatchWatch(batch=self.snapshot(self.final, None), polls=2)

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
            patch_activation_callback=lambda patch: patch.patch_id not in self.patches_off,
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
