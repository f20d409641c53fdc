"""BatchJobWorkflow: one JSONL file through one gateway batch, durably.

prepare (validate, upload, until processed) -> create -> wait until terminal ->
judge -> collect; or, attached to an existing batch, validate -> attach -> wait ...
The wait is a watch activity that polls inside one attempt and returns only
when there is news (see activities.watch), so its history is bounded whatever
its length, and a healthy wait shows no failure. A phase's deadline runs from
the gateway's own timestamps; past it, the batch is read again before the job
acts. Jobs started before the watch existed keep the retry-as-poll wait
(await_status_change) through workflow.patched(PATCH_WATCH).

Over 400 lines on purpose: the story and its failure paths (cancel during
create, deadline, giving up) share the run's state; rules, options, summaries,
progress text and the watch already live in their own modules.
"""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from temporalio import workflow
from temporalio.common import SearchAttributeKey
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    FailureError,
    RetryState,
    TimeoutError,
    TimeoutType,
    is_cancelled_exception,
)
from temporalio.types import MethodAsyncSingleParam

from workflows import leftovers, metrics, step_options
from workflows.batch_events import HearsBatchEvents
from workflows.outcome import Outcome, quota_refusal, rejection
from workflows.progress import describe
from workflows.step_options import StepOptions
from workflows.summaries import summary as step_summary
from workflows.watching import PATCH_WATCH, DeadlineExceeded, Watching, batch_files

with workflow.unsafe.imports_passed_through():
    from pydantic import ValidationError

    from activities.batch_activities import BatchActivities
    from contracts.batch_status import BatchStatus
    from contracts.job import (
        MAX_JOB_KEY,
        BatchJobInput,
        BatchJobResult,
        GatewayFiles,
        JobPhase,
        JobProgress,
        JobStatus,
    )
    from contracts.names import (
        FAILURE_BATCH_NOT_CHANGED,
        FAILURE_GATEWAY_REFUSES,
        FAILURE_INPUT_FILE_UNUSABLE,
        FAILURE_INVALID_JOB,
        FAILURE_QUOTA_NEVER_FITS,
        FAILURE_QUOTA_REFUSED,
        FAILURE_QUOTA_WAIT_EXCEEDED,
        PATCH_CANCEL_AFTER_CREATE,
        PATCH_CANCEL_DURING_ATTACH,
        PATCH_CLEAN_UP,
        PATCH_COLLECT_CLEANS_UP,
        PATCH_FILE_PROCESSED,
        PATCH_LATE_QUOTA_REFUSAL,
        PATCH_QUOTA_BOUNDS,
        PATCH_REFUSED_NOT_CANCELLED,
        PATCH_SUBMIT,
        PATCH_UPLOAD_READY,
        PATCH_VALIDATE_AND_UPLOAD,
        PATCH_WAIT_OUT_UNCANCELLED,
        QUERY_PROGRESS,
        QUOTA_REFUSAL_CODE,
        SEARCH_ATTRIBUTE_BATCH_ID,
        SEARCH_ATTRIBUTE_BATCH_STATUS,
        WORKFLOW_NAME,
    )
    from contracts.quota import stated_limit
    from contracts.steps import (
        AttachBatchRequest,
        AwaitChangeRequest,
        AwaitFileRequest,
        BatchSnapshot,
        CancelBatchRequest,
        CleanUpRequest,
        CollectedResults,
        CollectResultsRequest,
        CreateBatchRequest,
        InputSummary,
        QuotaRefusal,
        SubmitBatchRequest,
        SubmittedBatch,
        UploadedInput,
        UploadInputRequest,
        ValidateAndUploadRequest,
        ValidateInputRequest,
    )

BATCH_STATUS = SearchAttributeKey.for_keyword(SEARCH_ATTRIBUTE_BATCH_STATUS)
BATCH_ID = SearchAttributeKey.for_keyword(SEARCH_ATTRIBUTE_BATCH_ID)
# A quota wait makes at most about this many refused creates (each about 11 history
# events), whatever its max_wait: the back-off's ceiling is raised to max_wait / this.
MAX_QUOTA_REFUSALS = 400

Request = TypeVar("Request")
Response = TypeVar("Response")

# Callers send a BatchJobInput. The workflow takes it undecoded (a JSON object) and
# validates it itself, so an input that does not validate fails the job naming the
# field, while a step result an older worker cannot decode fails only the workflow
# task, which is retried once a newer worker runs (a rolling deploy).
if TYPE_CHECKING:
    JobArgument = BatchJobInput
else:
    JobArgument = dict[str, Any]


@workflow.defn(name=WORKFLOW_NAME)
class BatchJobWorkflow(HearsBatchEvents, Watching):
    # Fixed when the run starts; every phase reads them.
    _job: BatchJobInput
    _job_key: str
    _started: datetime
    _output_path: str
    _errors_path: str

    def __init__(self) -> None:
        self._input_file_id: str | None = None
        # Set when validation uploaded the input in the same step.
        self._uploaded: UploadedInput | None = None
        self._progress = JobProgress()
        self._last_status: BatchStatus | None = None
        self._last_seen: BatchSnapshot | None = None
        self._watching = False
        self._validated: InputSummary | None = None
        self._cleaned_up = False
        self._refused = False
        """No batch uses the upload: the last create was refused for quota, or the gateway
        never processed the file."""
        self._quota_since: datetime | None = None
        """When the gateway first refused this job's batch for its quota."""
        # Set when the collect step deletes the gateway files (collect-cleans-up-v1).
        self._collect_cleans = False
        self._left_at_collect: dict[str, str] = {}
        # Set when the job validates, uploads and creates in one step (submit-v1).
        self._submits = False
        super().__init__()

    @workflow.query(name=QUERY_PROGRESS)
    def progress(self) -> JobProgress:
        return self._progress

    @workflow.run
    async def run(self, job: JobArgument) -> BatchJobResult:
        try:
            result = await self._run(_parsed(job))
        except InputFromNewerRelease:
            raise  # fails the workflow task, retried until a newer worker runs it
        except (Exception, asyncio.CancelledError) as exc:
            # Only when the job ends: any other exception (a bug) fails the workflow
            # task, which is retried and replays on fixed code: no step may be added here.
            if isinstance(exc, FailureError) or is_cancelled_exception(exc):
                await self._clean_up(None, collected=False)
            # The SDK's workflow meter records nothing while replaying: counted once.
            metrics.count_job("cancelled" if is_cancelled_exception(exc) else "failed")
            raise
        metrics.count_job(result.status.value)
        metrics.count_requests(result.requests)
        return result

    async def _run(self, job: BatchJobInput) -> BatchJobResult:
        info = workflow.info()
        self._job = job
        self._started = workflow.now()
        self._job_key = job.job_key or _job_key(info.workflow_id, info.first_execution_run_id)
        self._output_path, self._errors_path = job.output_paths_for(info.workflow_id)

        self._submits = job.batch_id is None and workflow.patched(PATCH_SUBMIT)
        if self._submits:
            summary, batch = await self._submit()
            assert self._uploaded is not None
            outcome = await self._wait_past_refusals(batch, self._uploaded)
        else:
            summary = await self._validate()
            self._validated = summary
            if job.batch_id is None:
                uploaded = await self._upload(summary)
                outcome = await self._wait_past_refusals(await self._create(uploaded), uploaded)
            else:
                outcome = await self._attach(job.batch_id, summary)
        rejected = rejection(outcome.batch)
        if rejected is not None:
            self._set_phase(JobPhase.DONE, reason="the gateway rejected the batch")
            await self._clean_up(outcome.batch, collected=False)
            raise rejected
        outcome.read_batch_end()
        collected = await self._collect(outcome, summary)
        outcome.read_results(collected)
        self._set_phase(JobPhase.DONE, reason=outcome.reason)
        if collected.gateway_files is not None:
            gateway_files = self._deleted_at_collect(collected.gateway_files)
        else:
            # An older workflow, or an older worker's collect: the clean-up step deletes them.
            gateway_files = await self._clean_up(outcome.batch, collected=True)
        return self._result(outcome, collected, gateway_files)

    # -- the phases, in the order they run ------------------------------------------------

    async def _submit(self) -> tuple[InputSummary, BatchSnapshot]:
        """Validate, upload and create in one step (one hop fewer than two steps).

        When the upload must first be processed, or the create was refused for
        quota, the separate steps go on from the upload. A failure or cancel once
        a POST may be out looks for the batch by the job key and cancels it, as a
        failed create does.
        """
        job = self._job
        info = workflow.info()
        # A job on this patch runs collect-cleans-up-v1's code (and the older patches').
        self._collect_cleans = True
        if workflow.cancellation_reason() is not None:
            # Cancelled before any worker ran it: nothing was sent, nothing to look for.
            raise asyncio.CancelledError("cancelled before the job sent anything")
        self._set_phase(
            JobPhase.UPLOADING, reason="validating the input, uploading it, then creating the batch"
        )
        request = SubmitBatchRequest(
            validation=self._validation_request(),
            job_key=self._job_key,
            endpoint=job.endpoint,
            completion_window=job.completion_window,
            metadata=job.metadata,
            not_before=self._started,
            first_run=info.run_id == info.first_execution_run_id,
            give_up_pending_after_seconds=job.deadlines.validating.total_seconds(),
        )
        try:
            done = await self._step(BatchActivities.submit_batch, request, step_options.SUBMIT)
        except (asyncio.CancelledError, ActivityError) as exc:
            checkpoint = _submitted_before(exc)
            if checkpoint is None and not is_cancelled_exception(exc):
                raise  # failed before anything was uploaded or created
            if checkpoint is not None:
                self._took(checkpoint)
            self._refused = _file_unusable(exc)
            await self._cancel_any_created(exc)
            raise
        summary, uploaded = self._took(done)
        if done.batch is None:
            if done.refused is not None:
                return summary, await self._create_after_refusal(uploaded, done.refused)
            return summary, await self._create(await self._upload(summary))
        batch = done.batch
        self._observe(batch)
        await self._honour_cancel_after_create(batch)
        return summary, batch

    def _took(self, done: SubmittedBatch) -> tuple[InputSummary, UploadedInput]:
        """What a submit step validated and uploaded, as the job's state."""
        assert done.summary is not None and done.uploaded is not None
        self._validated = done.summary
        self._progress.requests = done.summary.requests
        self._uploaded = done.uploaded
        self._input_file_id = done.uploaded.file_id
        return done.summary, done.uploaded

    async def _create_after_refusal(
        self, uploaded: UploadedInput, refusal: QuotaRefusal
    ) -> BatchSnapshot:
        """A submit whose create was refused for quota: wait and create again, or, as a
        shard, fail so its parent admits it later (and the clean-up deletes the upload)."""
        self._refused = True
        self._end_if_never_fits(refusal.message)
        message = (
            f"the gateway refused the batch for its enqueued-token quota "
            f"[{QUOTA_REFUSAL_CODE}]: {refusal.message}"
        )
        if self._job.quota_retry is None:
            raise ApplicationError(
                message,
                refusal.message,
                refusal.retry_after,
                type=FAILURE_QUOTA_REFUSED,
                non_retryable=True,
            )
        self._set_phase(JobPhase.CREATING_BATCH)
        return await self._create(uploaded, refused=(refusal.message, refusal.retry_after))

    def _validation_request(self) -> ValidateInputRequest:
        job = self._job
        return ValidateInputRequest(
            input_path=job.input_path,
            endpoint=job.endpoint,
            limits=job.limits,
            output_path=self._output_path,
            errors_path=self._errors_path,
            replace_results=job.replace_results,
        )

    async def _validate(self) -> InputSummary:
        """Validate the input; a job that uploads it does both in one step (one hop fewer)."""
        job = self._job
        request = self._validation_request()
        if job.batch_id is None and self._validates_and_uploads():
            # Shown as uploading: validation reads a local copy and is the short part.
            self._set_phase(JobPhase.UPLOADING, reason="validating the input, then uploading it")
            done = await self._step(
                BatchActivities.validate_and_upload,
                ValidateAndUploadRequest(validation=request, job_key=self._job_key),
                step_options.VALIDATE_AND_UPLOAD,
            )
            assert done.summary is not None and done.uploaded is not None
            self._uploaded = done.uploaded
            summary = done.summary
        else:
            self._set_phase(JobPhase.VALIDATING_INPUT)
            summary = await self._step(
                BatchActivities.validate_input, request, step_options.VALIDATE
            )
        self._progress.requests = summary.requests
        return summary

    def _validates_and_uploads(self) -> bool:
        """Whether this job validates and uploads in one step; the newer patch is asked first.

        A job on collect-cleans-up-v1 runs validate-and-upload-v1's code too and records
        only the newer marker (each costs a marker and a search attribute update).
        """
        self._collect_cleans = workflow.patched(PATCH_COLLECT_CLEANS_UP)
        return self._collect_cleans or workflow.patched(PATCH_VALIDATE_AND_UPLOAD)

    async def _upload(self, summary: InputSummary) -> UploadedInput:
        """Upload the input (adopting an earlier attempt's upload), then wait until processed."""
        self._set_phase(JobPhase.UPLOADING)
        uploaded = self._uploaded
        if uploaded is None:
            uploaded = await self._step(
                BatchActivities.upload_input,
                UploadInputRequest(
                    input_path=self._job.input_path,
                    job_key=self._job_key,
                    sha256=summary.sha256,
                    bytes=summary.bytes,
                ),
                step_options.UPLOAD,
            )
        self._input_file_id = uploaded.file_id
        # Azure may report a new upload pending, and refuses a batch on it until processed;
        # when the upload's own answer says processed, there is nothing to wait for. A job
        # that validated and uploaded in one step runs code with both patches: it records
        # neither (each patch costs a marker and a search attribute update).
        if self._uploaded is not None:
            waits = not uploaded.ready
        else:
            waits = workflow.patched(PATCH_FILE_PROCESSED) and not (
                uploaded.ready and workflow.patched(PATCH_UPLOAD_READY)
            )
        if waits:
            try:
                await self._step(
                    BatchActivities.await_file_processed,
                    AwaitFileRequest(
                        file_id=uploaded.file_id,
                        poll_seconds=self._job.poll_interval.total_seconds(),
                        give_up_after_seconds=self._job.deadlines.validating.total_seconds(),
                    ),
                    step_options.file_processed(self._job.poll_interval),
                )
            except ActivityError:
                self._refused = True  # the gateway never processed it: no batch uses the upload
                raise
        return uploaded

    async def _attach(self, batch_id: str, summary: InputSummary) -> Outcome:
        """Start at the wait, for a batch made outside this job (by hand, or a lost create).

        A cancel that lands while the batch is read lets the read finish, so only
        a batch shown to run this input is cancelled; then it settles as a cancel
        during the wait does.
        """
        self._set_phase(JobPhase.CREATING_BATCH, reason=f"attaching to batch {batch_id}")
        request = AttachBatchRequest(
            batch_id=batch_id,
            job_key=self._job_key,
            input_sha256=summary.sha256,
            input_path=self._job.input_path,
            input_bytes=summary.bytes,
            endpoint=self._job.endpoint,
            input_requests=summary.requests,
        )
        if not workflow.patched(PATCH_CANCEL_DURING_ATTACH):
            batch = await self._step(BatchActivities.attach_batch, request, step_options.ATTACH)
            self._input_file_id = batch.input_file_id
            self._observe(batch)
            return await self._wait(batch)
        attaching = asyncio.ensure_future(
            self._step(BatchActivities.attach_batch, request, step_options.ATTACH)
        )
        try:
            batch = await asyncio.shield(attaching)
            cancelled = workflow.cancellation_reason() is not None
        except asyncio.CancelledError:
            batch, cancelled = await attaching, True
        self._input_file_id = batch.input_file_id
        self._observe(batch)
        if not cancelled:
            return await self._wait(batch)
        self._watching = self._watches()
        settled, note = await self._cancel_and_settle(batch, run_on_if_uncancellable=True)
        reason = _joined("the workflow was cancelled while attaching", note)
        return Outcome(settled, JobStatus.CANCELLED, reason)

    async def _create(
        self, uploaded: UploadedInput, refused: tuple[str, float | None] | None = None
    ) -> BatchSnapshot:
        job = self._job
        self._set_phase(JobPhase.CREATING_BATCH)
        request = CreateBatchRequest(
            input_file_id=uploaded.file_id,
            endpoint=job.endpoint,
            completion_window=job.completion_window,
            metadata=job.metadata,
            job_key=self._job_key,
            not_before=self._started,
            fresh_input=self._fresh(uploaded),
            give_up_pending_after_seconds=job.deadlines.validating.total_seconds(),
        )
        try:
            batch = await self._create_within_quota(request, refused)
        except (asyncio.CancelledError, ActivityError) as exc:
            if _quota_refused(exc) is not None:
                raise  # a shard: nothing runs, and its parent admits it again later
            self._refused = self._refused or _file_unusable(exc)
            await self._cancel_any_created(exc)
            raise
        self._observe(batch)
        await self._honour_cancel_after_create(batch)
        return batch

    async def _cancel_any_created(self, exc: BaseException) -> None:
        """The gateway may have created the batch before the create gave up or the
        cancel arrived: find it by the job key and cancel it."""
        try:
            await self._cancel(None)
        except ActivityError:
            if is_cancelled_exception(exc):
                raise exc from None
            workflow.logger.warning("could not look for a batch the failed create made")

    async def _honour_cancel_after_create(self, batch: BatchSnapshot) -> None:
        """The SDK hands back a create that finished although the cancel reached it
        first, and the cancel is then spent: honour it here, or the batch runs on."""
        if workflow.cancellation_reason() is None:
            return
        if not self._submits and not workflow.patched(PATCH_CANCEL_AFTER_CREATE):
            return
        self._set_phase(JobPhase.CANCELLING, reason="the workflow was cancelled")
        try:
            await self._cancel(batch.id)
        except ActivityError:
            workflow.logger.error("could not cancel batch %s: cancel it at the gateway", batch.id)
        raise asyncio.CancelledError(f"cancelled while batch {batch.id} was being created")

    async def _create_within_quota(
        self, request: CreateBatchRequest, refused: tuple[str, float | None] | None = None
    ) -> BatchSnapshot:
        """Create; while the gateway refuses for its enqueued-token quota, wait and try again.

        The quota frees as other batches end, hours later perhaps: the job waits
        with a back-off (the input's quota_retry) for up to its max_wait, and says
        so in its progress; a refusal whose stated limit the job can never fit ends
        it at once. A job given no quota_retry (a shard) fails with the refusal.
        ``refused``: the submit step's create was refused already; wait first.
        """
        retry = self._job.quota_retry
        wait: timedelta | None = None
        refusals = 0
        while True:
            if refused is None:
                self._refused = False
                try:
                    return await self._step(
                        BatchActivities.create_batch, request, step_options.CREATE
                    )
                except ActivityError as exc:
                    refused = _quota_refused(exc)
                    self._refused = refused is not None
                    if refused is None:
                        raise
                    if retry is None:
                        self._end_if_never_fits(refused[0])
                        raise
            assert retry is not None
            message, retry_after = refused
            refused = None
            refusals += 1
            self._end_if_never_fits(message)
            self._end_if_waited_enough(message, retry.max_wait, refusals)
            most = max(retry.most, retry.max_wait / MAX_QUOTA_REFUSALS)
            wait = retry.first if wait is None else min(wait * 2, most)
            if retry_after is not None:
                wait = max(wait, timedelta(seconds=retry_after))
            self._progress.gateway_error = message
            self._set_phase(
                JobPhase.CREATING_BATCH,
                reason=(
                    f"waiting for enqueued-token quota: the gateway refused the batch "
                    f"({refusals} time(s)); trying again at {_at(workflow.now() + wait)}"
                ),
            )
            workflow.logger.warning("batch refused for the enqueued-token quota: %s", message)
            await workflow.sleep(wait, summary="wait for enqueued-token quota")
            self._progress.gateway_error = None
            self._set_phase(JobPhase.CREATING_BATCH)

    def _end_if_never_fits(self, refusal: str) -> None:
        """End the job when the limit the refusal states is below its own estimate (of one
        request, or of the batch): no wait lets it run."""
        never = _never_fits(refusal, self._validated, sharded=self._job.quota_retry is None)
        if never is not None and workflow.patched(PATCH_QUOTA_BOUNDS):
            self._set_phase(JobPhase.DONE, reason=never.message)
            # Not chained: a sharded parent re-admits a shard whose failure names the code.
            raise never from None

    def _end_if_waited_enough(self, refusal: str, max_wait: timedelta, refusals: int) -> None:
        """End the job once it has waited its quota_retry.max_wait for the quota."""
        now = workflow.now()
        if self._quota_since is None:
            self._quota_since = now
        waited = now - self._quota_since
        if waited < max_wait or not workflow.patched(PATCH_QUOTA_BOUNDS):
            return
        message = (
            f"the gateway refused the batch for its enqueued-token quota {refusals} time(s) "
            f"over {_span(waited)}, as long as the job waits for it (quota_retry.max_wait, "
            f"--max-quota-wait-hours): giving up; no batch runs and nothing bills. "
            f"The last refusal: {refusal}"
        )
        self._set_phase(JobPhase.DONE, reason=message)
        raise ApplicationError(message, type=FAILURE_QUOTA_WAIT_EXCEEDED, non_retryable=True)

    def _fresh(self, uploaded: UploadedInput) -> bool:
        """Whether no batch can use this input yet: this run uploaded it, and no run came before.

        A retried run keeps the job key (it derives from the first run's id), and so may
        a reset one: its upload may adopt an earlier run's file that a batch already uses.
        """
        info = workflow.info()
        return not uploaded.adopted and info.run_id == info.first_execution_run_id

    async def _wait(self, batch: BatchSnapshot) -> Outcome:
        """Wait for the batch to end; past a deadline or on a cancel, cancel it and settle."""
        self._set_phase(JobPhase.WAITING)
        self._watching = self._watches()
        wait_started = workflow.now()
        try:
            outcome = Outcome(await self._wait_until_terminal(batch))
        except DeadlineExceeded as exc:
            reason = str(exc)
            workflow.logger.warning("%s; cancelling it", reason)
            settled, note = await self._cancel_and_settle(exc.last, run_on_if_uncancellable=False)
            outcome = Outcome(settled, JobStatus.DEADLINE_EXCEEDED, _joined(reason, note))
        except (asyncio.CancelledError, ActivityError) as exc:
            if not is_cancelled_exception(exc):
                assert isinstance(exc, ActivityError)
                # The gateway stopped answering for good (a revoked key, the batch
                # gone): never leave a billing batch unwatched without saying so.
                raise await self._abandon(self._last_seen or batch, exc) from None
            settled, note = await self._cancel_and_settle(
                self._last_seen or batch, run_on_if_uncancellable=True
            )
            outcome = Outcome(
                settled, JobStatus.CANCELLED, _joined("the workflow was cancelled", note)
            )
        metrics.record_wait(workflow.now() - wait_started, outcome.batch.status)
        return outcome

    async def _wait_past_refusals(self, batch: BatchSnapshot, uploaded: UploadedInput) -> Outcome:
        """Wait for the batch; one the gateway failed for its quota before it ran (OpenAI
        answers the create, then fails the batch at the end of validation) is a refusal like
        any other: wait for the quota and create again on the same upload, or, as a shard,
        fail so the parent admits it later (and the clean-up deletes the upload)."""
        outcome = await self._wait(batch)
        while True:
            refused = quota_refusal(outcome.batch)
            if refused is None or not workflow.patched(PATCH_LATE_QUOTA_REFUSAL):
                return outcome
            message = f"batch {outcome.batch.id} failed after it was created: {refused}"
            retried = await self._create_after_refusal(uploaded, QuotaRefusal(message=message))
            outcome = await self._wait(retried)

    def _watches(self) -> bool:
        """Whether this wait is a watch; by retries for jobs older than it, or that ask.

        The patch is asked first whatever the job chose, so every new job
        records the same marker and a later change of the default replays. A job
        on collect-cleans-up-v1 runs code that always has the watch: it need not
        ask (a patch costs a marker and a search attribute update). One that took
        only validate-and-upload-v1 recorded this marker, and replay needs it asked.
        """
        if self._collect_cleans:
            return self._job.wait_by == "watch"
        patched = workflow.patched(PATCH_WATCH)
        return patched and self._job.wait_by == "watch"

    async def _collect(self, outcome: Outcome, summary: InputSummary) -> CollectedResults:
        """Join the gateway's results to the input; a cancel now still gets them."""
        self._set_phase(JobPhase.DOWNLOADING)
        request = CollectResultsRequest(
            batch=outcome.batch,
            input_path=self._job.input_path,
            output_path=self._output_path,
            errors_path=self._errors_path,
            not_run_code=outcome.not_run_code,
            input_sha256=summary.sha256,
        )
        if self._collect_cleans:
            delete, self._left_at_collect = self._leftovers(outcome.batch)
            request.gateway_file_ids = delete
            return await self._collect_uninterrupted(outcome, request)
        try:
            return await self._step(BatchActivities.collect_results, request, step_options.COLLECT)
        except (asyncio.CancelledError, ActivityError) as exc:
            if not is_cancelled_exception(exc):
                assert isinstance(exc, ActivityError)
                raise _collect_failed(outcome, exc) from None
            # The batch has ended and is paid for: its results are worth the wait.
            outcome.reason = "cancel requested after the batch ended; its results were collected"
            return await self._step(BatchActivities.collect_results, request, step_options.COLLECT)

    async def _collect_uninterrupted(
        self, outcome: Outcome, request: CollectResultsRequest
    ) -> CollectedResults:
        """One collect, which a cancel does not interrupt: it may be deleting the files a
        second collect would download."""
        collecting = asyncio.ensure_future(
            self._step(BatchActivities.collect_results, request, step_options.COLLECT)
        )
        try:
            try:
                return await asyncio.shield(collecting)
            except asyncio.CancelledError:
                outcome.reason = (
                    "cancel requested after the batch ended; its results were collected"
                )
                return await collecting
        except ActivityError as exc:
            raise _collect_failed(outcome, exc) from None

    def _result(
        self, outcome: Outcome, collected: CollectedResults, gateway_files: GatewayFiles | None
    ) -> BatchJobResult:
        batch = outcome.batch
        return BatchJobResult(
            status=outcome.status,
            reason=outcome.reason,
            batch_id=batch.id,
            batch_status=batch.status,
            input_file_id=self._input_file_id or batch.input_file_id or "",
            output_file_id=batch.output_file_id,
            error_file_id=batch.error_file_id,
            output_path=self._output_path,
            errors_path=self._errors_path,
            requests=collected.requests,
            batch_counts=batch.counts,
            usage=collected.usage,
            started_at=self._started,
            batch_created_at=(
                datetime.fromtimestamp(batch.created_at, tz=UTC) if batch.created_at else None
            ),
            finished_at=workflow.now(),
            gateway_files=gateway_files,
        )

    # -- what a job leaves behind ---------------------------------------------------------

    async def _clean_up(
        self, batch: BatchSnapshot | None, *, collected: bool
    ) -> GatewayFiles | None:
        """Once, at the end, best effort: the input index (collection removed it already
        when it ran) and the job's files at the gateway, once their batch has ended.

        Never changes how the job ends: what could not be removed is logged, and
        for gateway files reported in the result.
        """
        summary = self._validated
        if self._cleaned_up or summary is None:
            return None
        self._cleaned_up = True
        delete, left = self._leftovers(batch)
        if collected and not delete:
            return GatewayFiles(left=left) if left else None
        if not workflow.patched(PATCH_CLEAN_UP):
            return None
        request = CleanUpRequest(
            output_path=self._output_path, input_sha256=summary.sha256, gateway_file_ids=delete
        )
        try:
            done = await self._step(BatchActivities.clean_up, request, step_options.CLEAN_UP)
        except (asyncio.CancelledError, ActivityError) as exc:
            if is_cancelled_exception(exc):
                why = "a cancel reached it"
            else:
                assert isinstance(exc, ActivityError)
                error = exc.cause or exc
                why = error.message if isinstance(error, FailureError) else str(error)
            workflow.logger.warning("clean-up did not finish: %s", why)
            done = GatewayFiles(left={f: f"the delete did not finish: {why}" for f in delete})
        done.left.update(left)
        return done if done.deleted or done.left else None

    def _deleted_at_collect(self, done: GatewayFiles) -> GatewayFiles | None:
        """What the collect step deleted, and what it was not to delete: nothing left to do."""
        self._cleaned_up = True
        done.left.update(self._left_at_collect)
        return done if done.deleted or done.left else None

    def _leftovers(self, batch: BatchSnapshot | None) -> tuple[list[str], dict[str, str]]:
        return leftovers.gateway_files(
            batch,
            uploaded=self._input_file_id if self._job.batch_id is None else None,
            attached=self._job.batch_id is not None,
            keep=self._job.keep_gateway_files,
            refused=self._refused and batch is None,
        )

    # -- waiting, cancelling, giving up ---------------------------------------------------

    async def _wait_until_terminal(self, batch: BatchSnapshot) -> BatchSnapshot:
        while not batch.status.is_terminal:
            limit = self._job.deadlines.for_status(batch.status)
            batch = await self._await_change(batch, limit)
        return batch

    async def _await_change(self, batch: BatchSnapshot, limit: timedelta | None) -> BatchSnapshot:
        if self._watching:
            return await self._watch(batch, limit)
        poll = self._job.poll_interval
        try:
            changed = await self._step(
                BatchActivities.await_status_change,
                AwaitChangeRequest(
                    batch_id=batch.id,
                    known_status=batch.status,
                    poll_seconds=poll.total_seconds(),
                ),
                step_options.await_change(poll, limit),
            )
        except ActivityError as exc:
            if limit is not None and _ran_out_of_time(exc):
                raise DeadlineExceeded(batch.status, limit, batch) from exc
            raise
        self._observe(changed)
        return changed

    async def _cancel(self, batch_id: str | None) -> BatchSnapshot | None:
        return await self._step(
            BatchActivities.cancel_batch,
            CancelBatchRequest(
                batch_id=batch_id,
                job_key=self._job_key,
                not_before=self._started,
                input_file_id=self._input_file_id,
                input_sha256=self._validated.sha256 if self._validated else None,
            ),
            step_options.CANCEL,
        )

    async def _cancel_and_settle(
        self, batch: BatchSnapshot, *, run_on_if_uncancellable: bool
    ) -> tuple[BatchSnapshot, str | None]:
        """Cancel at the gateway and wait for it to settle, keeping what already finished.

        A gateway without a cancel route (Kong may lack one) leaves the batch
        running and billing, and one may stay cancelling past its deadline: the
        job then waits for it to end, with no deadline, so what it ran is
        collected and nothing of it is paid for again (wait-out-uncancelled-v1;
        before it, a job past a deadline stopped waiting and left the batch running).
        """
        self._set_phase(JobPhase.CANCELLING)
        cancelled = await self._cancel(batch.id)
        if cancelled is not None:
            batch = cancelled
            self._observe(batch)
        if not batch.status.is_terminal and batch.status is not BatchStatus.CANCELLING:
            uncancelled = f"the gateway could not cancel batch {batch.id}"
            if not run_on_if_uncancellable:
                if not workflow.patched(PATCH_WAIT_OUT_UNCANCELLED):
                    return batch, f"{uncancelled}; it may still run"
                batch = await self._wait_out(batch, uncancelled)
                return batch, f"{uncancelled}, so it ran to its end and its results were kept"
            workflow.logger.warning(
                "the gateway could not cancel batch %s; waiting for it to end", batch.id
            )
            self._set_phase(JobPhase.WAITING)
            try:
                batch = await self._wait_until_terminal(batch)
            except DeadlineExceeded as exc:
                if not workflow.patched(PATCH_WAIT_OUT_UNCANCELLED):
                    return exc.last, f"{uncancelled}; {exc}"
                batch = await self._wait_out(exc.last, f"{uncancelled}; {exc}")
            return batch, "the gateway could not cancel the batch, so it ran to its end"
        limit = self._job.deadlines.cancelling
        try:
            while not batch.status.is_terminal:
                batch = await self._await_change(batch, limit)
        except DeadlineExceeded as exc:
            still = f"batch {batch.id} was still {batch.status} after {limit}"
            if not workflow.patched(PATCH_WAIT_OUT_UNCANCELLED):
                workflow.logger.warning("%s; collecting what is there", still)
                return batch, still
            batch = await self._wait_out(exc.last, still)
            return batch, f"{still}; it ended {batch.status} later"
        return batch, None

    async def _wait_out(self, batch: BatchSnapshot, why: str) -> BatchSnapshot:
        """Wait, with no deadline, for a batch the gateway did not cancel: it runs and bills
        on, so its results are worth collecting, and a shard's requests must not be sent
        again while it may still run them. Shown in the progress, status and Web UI."""
        reason = f"{why}: waiting for it to end, with no deadline, to collect what it ran"
        workflow.logger.warning("%s", reason)
        self._set_phase(JobPhase.WAITING, reason=reason)
        while not batch.status.is_terminal:
            batch = await self._await_change(batch, None)
        return batch

    async def _abandon(self, batch: BatchSnapshot, cause: ActivityError) -> ApplicationError:
        """Best effort before failing: cancel the batch, so it stops billing; the failure
        names the batch, its files, and whether it may still be billing."""
        error = cause.cause or cause
        failure_type = error.type if isinstance(error, ApplicationError) else None
        if failure_type == FAILURE_GATEWAY_REFUSES and workflow.patched(
            PATCH_REFUSED_NOT_CANCELLED
        ):
            # A gateway that refuses to read the batch refuses its cancel too; the batch
            # may run on, and a job attached to it once the key works collects it.
            note = (
                "it was not cancelled and may still run and bill: once the gateway takes "
                f"the worker's key again, `python starter.py attach {batch.id} "
                f"{self._job.input_path}` waits for it and collects its results, or cancel "
                "it at the gateway"
            )
            message = f"{error}; giving up on {batch_files(batch)}: {note}"
            workflow.logger.error("%s", message)
            self._set_phase(JobPhase.DONE, reason=message)
            return ApplicationError(message, type=failure_type, non_retryable=True)
        self._set_phase(JobPhase.CANCELLING, reason=f"the gateway failed: {error}")
        try:
            await self._cancel(batch.id)
            note = "its cancel was requested at the gateway, so it stops billing"
        except ActivityError:
            note = "it could not be cancelled and may still be billing: cancel it at the gateway"
        message = f"{error}; giving up on {batch_files(batch)}: {note}"
        workflow.logger.error("%s", message)
        self._set_phase(JobPhase.DONE, reason=message)
        return ApplicationError(message, type=failure_type, non_retryable=True)

    # -- one activity step, and what the job shows ----------------------------------------

    async def _step(
        self,
        activity: MethodAsyncSingleParam[BatchActivities, Request, Response],
        request: Request,
        options: StepOptions,
    ) -> Response:
        return await self._start_step(activity, request, options)

    def _start_step(
        self,
        activity: MethodAsyncSingleParam[BatchActivities, Request, Response],
        request: Request,
        options: StepOptions,
    ) -> workflow.ActivityHandle[Response]:
        return workflow.start_activity_method(
            activity,
            request,
            start_to_close_timeout=options.start_to_close,
            heartbeat_timeout=options.heartbeat_timeout or self._job.heartbeat_timeout,
            schedule_to_close_timeout=options.schedule_to_close,
            retry_policy=options.retry,
            cancellation_type=options.cancellation,
            summary=step_summary(request),
        )

    def _observe(self, batch: BatchSnapshot) -> None:
        # A batch created again after a late quota refusal replaces the refused one.
        new_batch = self._last_seen is not None and batch.id != self._last_seen.id
        self._last_seen = batch
        self._first_seen.setdefault(batch.status, workflow.now())
        if batch.status != self._progress.batch_status:
            self._progress.phase_since = self._phase_start(batch) if self._watching else None
            self._progress.deadline = None
        self._progress.batch_id = batch.id
        self._progress.batch_status = batch.status
        self._progress.counts = batch.counts
        self._progress.updated_at = workflow.now()
        if batch.status != self._last_status:
            updates = [BATCH_STATUS.value_set(batch.status.value)]
            if self._last_status is None or new_batch:
                updates.append(BATCH_ID.value_set(batch.id))
            workflow.upsert_search_attributes(updates)
            self._last_status = batch.status
        workflow.set_current_details(describe(self._progress))

    def _set_phase(self, phase: JobPhase, reason: str | None = None) -> None:
        self._progress.phase = phase
        self._progress.reason = reason
        self._progress.updated_at = workflow.now()
        workflow.set_current_details(describe(self._progress))


class InputFromNewerRelease(Exception):
    """A workflow's child input with fields this worker does not know: written by a newer
    release mid-deploy, never typed by a person. Not a FailureError, so it fails the
    workflow task, which Temporal retries until a worker that knows the fields runs it."""


def _parsed(job: JobArgument) -> BatchJobInput:
    """The input, or a non-retryable failure naming each field that does not validate.

    Unknown fields are a caller's typo, except in a child's input (a parent's code wrote
    it): there they come from a newer release, and the job waits for a worker of it.
    """
    try:
        return BatchJobInput.parse(job)
    except ValidationError as exc:
        unknown = [
            ".".join(str(part) for part in error["loc"])
            for error in exc.errors()
            if error["type"] == "extra_forbidden"
        ]
        parent = workflow.info().parent
        if unknown and parent is not None:
            raise InputFromNewerRelease(
                f"the input from parent workflow {parent.workflow_id} has "
                f"fields this worker does not know ({', '.join(unknown)}): a newer release "
                "wrote it; waiting for a worker of that release"
            ) from None
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'input'}: {error['msg']}"
            for error in exc.errors()
        )
        raise ApplicationError(
            f"the job's input does not validate: {problems}",
            type=FAILURE_INVALID_JOB,
            non_retryable=True,
        ) from None


def _quota_refused(exc: BaseException) -> tuple[str, float | None] | None:
    """The gateway's message and Retry-After of a create refused for quota, else None."""
    cause = exc.cause if isinstance(exc, ActivityError) else None
    if not isinstance(cause, ApplicationError) or cause.type != FAILURE_QUOTA_REFUSED:
        return None
    details = list(cause.details)
    message = str(details[0]) if details else cause.message
    retry_after = details[1] if len(details) > 1 else None
    return message, float(retry_after) if isinstance(retry_after, int | float) else None


def _file_unusable(exc: BaseException) -> bool:
    """A create that failed because the gateway never processed its file: no batch uses it."""
    cause = exc.cause if isinstance(exc, ActivityError) else None
    return isinstance(cause, ApplicationError) and cause.type == FAILURE_INPUT_FILE_UNUSABLE


def _submitted_before(exc: BaseException) -> SubmittedBatch | None:
    """What a failed submit step had validated and uploaded (its failure's last detail);
    None when it failed before that, or was cancelled."""
    cause = exc.cause if isinstance(exc, ActivityError) else None
    if not isinstance(cause, ApplicationError) or not cause.details:
        return None
    try:
        done = SubmittedBatch.model_validate(cause.details[-1])
    except ValidationError:
        return None
    return done if done.summary is not None and done.uploaded is not None else None


def _never_fits(
    refusal: str, summary: InputSummary | None, *, sharded: bool
) -> ApplicationError | None:
    """The failure of a job the quota can never admit, by the limit its refusal states.

    Never the refusal code in its words: a sharded parent re-admits a shard whose
    failure carries it."""
    limit = stated_limit(refusal)
    if limit is None or summary is None or summary.input_tokens is None:
        return None
    largest = summary.largest_request_tokens or 0
    if largest > limit:
        text = (
            f"request {summary.largest_request_id!r} alone has about {largest:,} input tokens, "
            f"more than the enqueued-token limit of {limit:,} the gateway states: no wait lets "
            "it run; shorten it, or run the job where the quota is larger"
        )
    elif summary.input_tokens > limit:
        fit = max(1, summary.requests * limit // summary.input_tokens)
        split = (
            f"run it with --max-batch-requests {fit} or fewer"
            if sharded
            else f"run it as a sharded job: --max-enqueued-tokens {limit} "
            f"--max-batch-requests {fit}"
        )
        text = (
            f"the batch's {summary.requests:,} requests have about {summary.input_tokens:,} "
            f"input tokens, more than the enqueued-token limit of {limit:,} the gateway "
            f"states: no wait lets it run whole; split it ({split}, about {fit:,} requests a "
            "batch fit)"
        )
    else:
        return None
    return ApplicationError(text, type=FAILURE_QUOTA_NEVER_FITS, non_retryable=True)


def _span(waited: timedelta) -> str:
    hours = waited.total_seconds() / 3600
    return f"{hours:.1f} h" if hours >= 1 else f"{waited.total_seconds() / 60:.0f} min"


def _at(moment: datetime) -> str:
    return moment.strftime("%H:%M:%S UTC")


def _joined(reason: str, note: str | None) -> str:
    return f"{reason}; {note}" if note else reason


def _job_key(workflow_id: str, run_id: str) -> str:
    """Stable across retries and worker restarts; short enough for batch metadata (512)."""
    key = f"{workflow_id}/{run_id}"
    if len(key) <= MAX_JOB_KEY:
        return key
    return f"{key[: MAX_JOB_KEY - 25]}-{hashlib.sha256(key.encode()).hexdigest()[:24]}"


def _ran_out_of_time(exc: ActivityError) -> bool:
    if exc.retry_state == RetryState.TIMEOUT:
        return True
    cause = exc.cause
    if isinstance(cause, TimeoutError):
        return cause.type in (TimeoutType.SCHEDULE_TO_CLOSE, TimeoutType.SCHEDULE_TO_START)
    return isinstance(cause, ApplicationError) and cause.type == FAILURE_BATCH_NOT_CHANGED


def _collect_failed(outcome: Outcome, exc: ActivityError) -> ApplicationError:
    """The job's failure when collection gave up: the batch no longer bills; its files stay."""
    error = exc.cause or exc
    return ApplicationError(
        f"collecting {batch_files(outcome.batch)} failed: {error}; the batch has "
        "ended and no longer bills; the job deleted none of its files at the gateway",
        type=error.type if isinstance(error, ApplicationError) else None,
        non_retryable=True,
    )
