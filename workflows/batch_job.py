"""BatchJobWorkflow: one JSONL file through one gateway batch, durably.

validate -> upload -> create -> wait until terminal -> collect results.
The wait costs a handful of history events whatever its length: each phase is
one activity that Temporal retries every poll interval until the status moves,
and the phase's deadline is that activity's schedule-to-close timeout.
"""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeKey
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    RetryState,
    TimeoutError,
    TimeoutType,
    is_cancelled_exception,
)
from temporalio.workflow import ActivityCancellationType

with workflow.unsafe.imports_passed_through():
    from pydantic import ValidationError

    from activities.batch_activities import BatchActivities
    from contracts.job import (
        MAX_JOB_KEY,
        BatchJobInput,
        BatchJobResult,
        JobPhase,
        JobProgress,
        JobStatus,
    )
    from contracts.names import (
        FAILURE_BATCH_FAILED,
        FAILURE_BATCH_NOT_CHANGED,
        QUERY_PROGRESS,
        SEARCH_ATTRIBUTE_BATCH_ID,
        SEARCH_ATTRIBUTE_BATCH_STATUS,
        WORKFLOW_NAME,
    )
    from contracts.steps import (
        AwaitChangeRequest,
        BatchSnapshot,
        CancelBatchRequest,
        CollectedResults,
        CollectResultsRequest,
        CreateBatchRequest,
        UploadInputRequest,
        ValidateInputRequest,
    )
    from observability.names import METRIC_BATCH_WAIT, METRIC_JOBS, METRIC_REQUESTS

BATCH_STATUS = SearchAttributeKey.for_keyword(SEARCH_ATTRIBUTE_BATCH_STATUS)
BATCH_ID = SearchAttributeKey.for_keyword(SEARCH_ATTRIBUTE_BATCH_ID)

TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})
NOT_RUN_CODES = {
    "expired": "batch_expired",
    "cancelled": "batch_cancelled",
    "failed": "batch_failed",
}

# Gateway calls: retried with backoff for as long as the schedule-to-close allows;
# configuration errors are non-retryable and fail at once.
GATEWAY_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=2),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=2),
)
# Validation reads a local file: bad input is non-retryable and fails at once;
# what is left to retry is a worker that died mid-read, however often that happens.
LOCAL_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30)
)


class _DeadlineExceeded(Exception):
    def __init__(self, phase: str, limit: timedelta, last: BatchSnapshot) -> None:
        super().__init__(f"batch {last.id} spent longer than {limit} in {phase}")
        self.last = last


# An input that does not validate fails the workflow with pydantic's message,
# instead of failing its first task over and over (a workflow that hangs).
@workflow.defn(name=WORKFLOW_NAME, failure_exception_types=[ValidationError])
class BatchJobWorkflow:
    def __init__(self) -> None:
        self._progress = JobProgress()
        self._last_status: str | None = None
        self._last_seen: BatchSnapshot | None = None

    @workflow.query(name=QUERY_PROGRESS)
    def progress(self) -> JobProgress:
        return self._progress

    @workflow.run
    async def run(self, job: BatchJobInput) -> BatchJobResult:
        try:
            result = await self._run(job)
        except (Exception, asyncio.CancelledError) as exc:
            # The SDK's workflow meter records nothing while replaying: counted once.
            _count_job("cancelled" if is_cancelled_exception(exc) else "failed")
            raise
        _count_job(result.status.value)
        requests = workflow.metric_meter().create_counter(
            METRIC_REQUESTS, "Requests of finished jobs, by outcome", "requests"
        )
        for outcome, count in (
            ("succeeded", result.requests.succeeded),
            ("failed", result.requests.failed),
            ("not_run", result.requests.not_run),
        ):
            requests.add(count, {"outcome": outcome})
        return result

    async def _run(self, job: BatchJobInput) -> BatchJobResult:
        info = workflow.info()
        started = workflow.now()
        job_key = job.job_key or _job_key(info.workflow_id, info.first_execution_run_id)
        output_path, errors_path = job.output_paths_for(info.workflow_id)

        self._set_phase(JobPhase.VALIDATING_INPUT)
        summary = await workflow.execute_activity_method(
            BatchActivities.validate_input,
            ValidateInputRequest(
                input_path=job.input_path,
                endpoint=job.endpoint,
                limits=job.limits,
                output_path=output_path,
                errors_path=errors_path,
            ),
            start_to_close_timeout=timedelta(minutes=30),
            heartbeat_timeout=job.heartbeat_timeout,
            schedule_to_close_timeout=timedelta(hours=2),
            retry_policy=LOCAL_RETRY,
        )
        self._progress.requests = summary.requests

        self._set_phase(JobPhase.UPLOADING)
        uploaded = await workflow.execute_activity_method(
            BatchActivities.upload_input,
            UploadInputRequest(
                input_path=job.input_path,
                job_key=job_key,
                sha256=summary.sha256,
                bytes=summary.bytes,
            ),
            start_to_close_timeout=timedelta(hours=1),
            heartbeat_timeout=job.heartbeat_timeout,
            schedule_to_close_timeout=timedelta(hours=6),
            retry_policy=GATEWAY_RETRY,
        )

        self._set_phase(JobPhase.CREATING_BATCH)
        try:
            batch = await workflow.execute_activity_method(
                BatchActivities.create_batch,
                CreateBatchRequest(
                    input_file_id=uploaded.file_id,
                    endpoint=job.endpoint,
                    completion_window=job.completion_window,
                    metadata=job.metadata,
                    job_key=job_key,
                    not_before=started,
                ),
                start_to_close_timeout=timedelta(minutes=5),
                heartbeat_timeout=job.heartbeat_timeout,
                schedule_to_close_timeout=timedelta(hours=6),
                retry_policy=GATEWAY_RETRY,
                # A cancelled create is waited for, so the look-up below sees any
                # batch its POST made before the cancel reached it.
                cancellation_type=ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
            )
        except (asyncio.CancelledError, ActivityError) as exc:
            # The gateway may have created the batch before the create gave up or
            # the cancel arrived: find it by the job key and cancel it.
            try:
                await self._cancel(job, None, job_key, started)
            except ActivityError:
                if is_cancelled_exception(exc):
                    raise exc from None
                workflow.logger.warning("could not look for a batch the failed create made")
            raise
        self._observe(batch)

        status = JobStatus.SUCCEEDED
        reason: str | None = None
        self._set_phase(JobPhase.WAITING)
        wait_started = workflow.now()
        try:
            batch = await self._wait_until_terminal(job, batch)
        except _DeadlineExceeded as exc:
            status, reason = JobStatus.DEADLINE_EXCEEDED, str(exc)
            workflow.logger.warning("%s; cancelling it", reason)
            batch, note = await self._cancel_and_settle(
                job, exc.last, job_key, started, run_on_if_uncancellable=False
            )
            reason = f"{reason}; {note}" if note else reason
        except (asyncio.CancelledError, ActivityError) as exc:
            if not is_cancelled_exception(exc):
                assert isinstance(exc, ActivityError)
                # The gateway stopped answering for good (a revoked key, the batch
                # gone): never leave a billing batch unwatched without saying so.
                await self._abandon(job, self._last_seen or batch, job_key, started, exc)
                raise
            status, reason = JobStatus.CANCELLED, "the workflow was cancelled"
            batch, note = await self._cancel_and_settle(
                job, self._last_seen or batch, job_key, started, run_on_if_uncancellable=True
            )
            reason = f"{reason}; {note}" if note else reason
        workflow.metric_meter().create_histogram_float(
            METRIC_BATCH_WAIT, "From batch created to batch terminal, as the job saw it", "s"
        ).record((workflow.now() - wait_started).total_seconds(), {"batch_status": batch.status})

        ran_something = bool(
            batch.output_file_id
            or batch.error_file_id
            or (batch.counts is not None and batch.counts.completed + batch.counts.failed)
        )
        if batch.status == "failed" and ran_something:
            # Failed mid-run: what finished is kept, the rest reported not run.
            if status is JobStatus.SUCCEEDED:
                status = JobStatus.COMPLETED_WITH_FAILURES
                reason = "the batch failed at the gateway: " + "; ".join(batch.errors or ["?"])
        elif batch.status == "failed":
            self._set_phase(JobPhase.DONE, reason="the gateway rejected the batch")
            details = "\n".join(f"  {e}" for e in batch.errors) or "  (no details given)"
            raise ApplicationError(
                f"batch {batch.id} failed validation at the gateway:\n{details}",
                batch.errors,
                type=FAILURE_BATCH_FAILED,
                non_retryable=True,
            )

        self._set_phase(JobPhase.DOWNLOADING)
        if status is JobStatus.SUCCEEDED and batch.status in ("expired", "cancelled"):
            status = JobStatus.EXPIRED if batch.status == "expired" else JobStatus.CANCELLED
            reason = f"the batch ended {batch.status} at the gateway"
        collect = CollectResultsRequest(
            batch=batch,
            input_path=job.input_path,
            output_path=output_path,
            errors_path=errors_path,
            not_run_code=NOT_RUN_CODES.get(batch.status, status.value),
            input_sha256=summary.sha256,
        )
        try:
            collected = await self._collect(job, collect)
        except (asyncio.CancelledError, ActivityError) as exc:
            if not is_cancelled_exception(exc):
                raise
            # The batch has ended and is paid for: a cancel now still gets its results.
            reason = "cancel requested after the batch ended; its results were collected"
            collected = await self._collect(job, collect)
        tally = collected.requests
        if status is JobStatus.SUCCEEDED and (
            tally.failed or tally.not_run or collected.problems or tally.succeeded != tally.total
        ):
            status = JobStatus.COMPLETED_WITH_FAILURES
            summary_line = (
                f"{tally.failed + tally.not_run} of {tally.total} requests did not succeed"
            )
            reason = "; ".join([summary_line, *collected.problems])

        self._set_phase(JobPhase.DONE, reason=reason)
        return BatchJobResult(
            status=status,
            reason=reason,
            batch_id=batch.id,
            batch_status=batch.status,
            input_file_id=uploaded.file_id,
            output_file_id=batch.output_file_id,
            error_file_id=batch.error_file_id,
            output_path=output_path,
            errors_path=errors_path,
            requests=tally,
            batch_counts=batch.counts,
            usage=collected.usage,
            started_at=started,
            batch_created_at=(
                datetime.fromtimestamp(batch.created_at, tz=UTC) if batch.created_at else None
            ),
            finished_at=workflow.now(),
        )

    async def _collect(
        self, job: BatchJobInput, request: CollectResultsRequest
    ) -> CollectedResults:
        return await workflow.execute_activity_method(
            BatchActivities.collect_results,
            request,
            start_to_close_timeout=timedelta(hours=1),
            heartbeat_timeout=job.heartbeat_timeout,
            schedule_to_close_timeout=timedelta(hours=12),
            retry_policy=GATEWAY_RETRY,
        )

    async def _abandon(
        self,
        job: BatchJobInput,
        batch: BatchSnapshot,
        job_key: str,
        started: datetime,
        cause: ActivityError,
    ) -> None:
        """Best effort before failing: cancel the batch, so it stops billing, and say which."""
        self._set_phase(JobPhase.CANCELLING, reason=f"the gateway failed: {cause.cause or cause}")
        try:
            await self._cancel(job, batch.id, job_key, started)
            note = f"batch {batch.id} was cancelled"
        except ActivityError:
            note = f"batch {batch.id} could not be cancelled: cancel it at the gateway"
        workflow.logger.error("giving up on batch %s: %s; %s", batch.id, cause.cause, note)
        self._set_phase(JobPhase.DONE, reason=f"{cause.cause or cause}; {note}")

    async def _wait_until_terminal(self, job: BatchJobInput, batch: BatchSnapshot) -> BatchSnapshot:
        while batch.status not in TERMINAL:
            limit = self._deadline_for(job, batch.status)
            batch = await self._await_change(job, batch, limit)
        return batch

    async def _await_change(
        self, job: BatchJobInput, batch: BatchSnapshot, limit: timedelta
    ) -> BatchSnapshot:
        poll = job.poll_interval
        try:
            changed = await workflow.execute_activity_method(
                BatchActivities.await_status_change,
                AwaitChangeRequest(
                    batch_id=batch.id,
                    known_status=batch.status,
                    poll_seconds=poll.total_seconds(),
                ),
                start_to_close_timeout=timedelta(minutes=5),
                heartbeat_timeout=job.heartbeat_timeout,
                schedule_to_close_timeout=limit,
                retry_policy=RetryPolicy(
                    initial_interval=poll,
                    backoff_coefficient=1.0,
                    maximum_interval=poll,
                ),
            )
        except ActivityError as exc:
            if _ran_out_of_time(exc):
                raise _DeadlineExceeded(batch.status, limit, batch) from exc
            raise
        self._observe(changed)
        return changed

    def _deadline_for(self, job: BatchJobInput, status: str) -> timedelta:
        deadlines = job.deadlines
        return {
            "validating": deadlines.validating,
            "in_progress": deadlines.in_progress,
            "finalizing": deadlines.finalizing,
            "cancelling": deadlines.cancelling,
        }.get(status, deadlines.in_progress)

    async def _cancel(
        self, job: BatchJobInput, batch_id: str | None, job_key: str, started: datetime
    ) -> BatchSnapshot | None:
        return await workflow.execute_activity_method(
            BatchActivities.cancel_batch,
            CancelBatchRequest(batch_id=batch_id, job_key=job_key, not_before=started),
            start_to_close_timeout=timedelta(minutes=2),
            heartbeat_timeout=job.heartbeat_timeout,
            schedule_to_close_timeout=timedelta(hours=1),
            retry_policy=GATEWAY_RETRY,
        )

    async def _cancel_and_settle(
        self,
        job: BatchJobInput,
        batch: BatchSnapshot,
        job_key: str,
        started: datetime,
        *,
        run_on_if_uncancellable: bool,
    ) -> tuple[BatchSnapshot, str | None]:
        """Cancel at the gateway and wait for it to settle, keeping what already finished.

        A gateway without a cancel route (Kong may lack one) leaves the batch
        running and billing: when the user cancelled, the job then waits for it
        to end so its results are kept; past a deadline it stops waiting.
        """
        self._set_phase(JobPhase.CANCELLING)
        cancelled = await self._cancel(job, batch.id, job_key, started)
        if cancelled is not None:
            batch = cancelled
            self._observe(batch)
        if batch.status not in TERMINAL and batch.status not in ("cancelling", "cancelled"):
            if not run_on_if_uncancellable:
                return batch, f"the gateway could not cancel batch {batch.id}; it may still run"
            workflow.logger.warning(
                "the gateway could not cancel batch %s; waiting for it to end", batch.id
            )
            self._set_phase(JobPhase.WAITING)
            try:
                batch = await self._wait_until_terminal(job, batch)
            except _DeadlineExceeded as exc:
                return exc.last, f"the gateway could not cancel batch {batch.id}; {exc}"
            return batch, "the gateway could not cancel the batch, so it ran to its end"
        try:
            while batch.status not in TERMINAL:
                batch = await self._await_change(job, batch, job.deadlines.cancelling)
        except _DeadlineExceeded:
            workflow.logger.warning(
                "batch %s did not settle within %s; collecting what is there",
                batch.id,
                job.deadlines.cancelling,
            )
            return (
                batch,
                f"batch {batch.id} was still {batch.status} after {job.deadlines.cancelling}",
            )
        return batch, None

    def _observe(self, batch: BatchSnapshot) -> None:
        self._last_seen = batch
        self._progress.batch_id = batch.id
        self._progress.batch_status = batch.status
        self._progress.counts = batch.counts
        self._progress.updated_at = workflow.now()
        if batch.status != self._last_status:
            updates = [BATCH_STATUS.value_set(batch.status)]
            if self._last_status is None:
                updates.append(BATCH_ID.value_set(batch.id))
            workflow.upsert_search_attributes(updates)
            self._last_status = batch.status
        self._show()

    def _set_phase(self, phase: JobPhase, reason: str | None = None) -> None:
        self._progress.phase = phase
        self._progress.reason = reason
        self._progress.updated_at = workflow.now()
        self._show()

    def _show(self) -> None:
        p = self._progress
        lines = [f"**phase** {p.phase.value}"]
        if p.batch_id:
            lines.append(f"**batch** {p.batch_id} ({p.batch_status})")
        if p.counts is not None:
            c = p.counts
            lines.append(
                f"**requests** {c.completed + c.failed}/{c.total or p.requests or '?'} "
                f"finished, {c.failed} failed"
            )
        elif p.requests is not None:
            lines.append(f"**requests** {p.requests}")
        if p.reason:
            lines.append(f"**reason** {p.reason}")
        workflow.set_current_details("\n\n".join(lines))


def _count_job(status: str) -> None:
    workflow.metric_meter().create_counter(
        METRIC_JOBS, "Batch jobs that ended, by final status", "jobs"
    ).add(1, {"status": status})


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
