"""The activities of a batch job, as methods of one class that holds the gateway client.

Each is safe to run twice: uploads and batches are tagged with the job key and
a retry looks them up before it creates anything, so a worker that dies after
the gateway acted but before Temporal heard of it costs nothing on the retry.
Where the gateway cannot list batches, a create records at Temporal that its
POST may be out before sending it, and a retry that finds that mark creates
nothing (activities.create_mark).

Over 400 lines on purpose: Temporal registers the bound methods of this one
class, built with its gateway client and storage (the samples' shape); what is
not an activity already lives beside it (validation, results, input_index,
watch, failures). Splitting it by step is the next move if it grows again.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import tempfile
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from temporalio import activity
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from activities.clean_up import delete_gateway_files, forget_index, forget_input_index
from activities.collect_record import PublishRecord, published_before
from activities.create_mark import PostMark, created_batch, marked, timed_out
from activities.failures import temporal_failures
from activities.heartbeat import heartbeating
from activities.input_index import ids_to_join, input_index_location, write_input_index
from activities.results import (
    CollectedFiles,
    collect_results,
)
from activities.results_owner import mark_as_written_by, refuse_others_results
from activities.validation import InputProblems, ensure_unchanged, validate_jsonl
from activities.watch import Watch, detach
from contracts.constants import ENV_ATTACH_ANY_BATCH
from contracts.job import BatchCounts, GatewayFiles
from contracts.names import (
    FAILURE_BATCH_NOT_CHANGED,
    FAILURE_BATCH_NOT_FOR_INPUT,
    FAILURE_CREATE_OUTCOME_UNKNOWN,
    FAILURE_FILE_NOT_PROCESSED,
    FAILURE_INPUT_FILE_UNUSABLE,
    FAILURE_QUOTA_REFUSED,
    JOB_KEY_METADATA,
    QUOTA_REFUSAL_CODE,
)
from contracts.quota import is_quota_refusal
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
from gateway.client import GatewayClient
from gateway.errors import (
    GatewayError,
    InputFileNotReadyError,
    NotFoundError,
    RouteNotSupportedError,
)
from gateway.models import Batch, BatchStatus, FileObject, FileStatus
from storage import Storage

# How far back (by the gateway's clock) a lookup still considers a batch its own,
# and how many objects it reads at most before it gives up looking.
LOOKUP_CLOCK_SKEW = timedelta(minutes=10)
LOOKUP_MAX_OBJECTS = 2_000
"""Only for a gateway not seen listing newest first: one that is pages back to the job's
start, whatever the number of batches since (a look bounded by time, not count)."""
# After an unanswered POST /batches, how long a retry looks for its batch before creating
# again (a provider still making it when the gateway gave up).
CREATE_SETTLE_SECONDS = 60.0
CREATE_LOOK_EVERY_SECONDS = 5.0


def snapshot(batch: Batch, *, adopted: bool = False) -> BatchSnapshot:
    counts = batch.request_counts
    return BatchSnapshot(
        id=batch.id,
        status=batch.status.value,
        input_file_id=batch.input_file_id,
        output_file_id=batch.output_file_id,
        error_file_id=batch.error_file_id,
        counts=None
        if counts is None
        else BatchCounts(total=counts.total, completed=counts.completed, failed=counts.failed),
        created_at=batch.created_at,
        errors=[e.describe() for e in batch.errors.data],
        adopted=adopted,
        in_progress_at=batch.in_progress_at,
        finalizing_at=batch.finalizing_at,
        cancelling_at=batch.cancelling_at,
    )


def _oldest(batches: list[Batch]) -> Batch:
    """The batch every attempt of a job agrees to keep."""
    return min(batches, key=lambda b: (b.created_at or 0, b.id))


class _NewestFirst:
    """Whether a listing has shown itself newest first so far (OpenAI, Azure, the emulator).

    Two dated batches in order are the evidence; one out of order (a gateway that
    lists oldest first, or in no order) ends the trust for the rest of the listing.
    """

    def __init__(self) -> None:
        self._last: int | None = None
        self._pairs_in_order = 0
        self._broken = False

    def saw(self, created_at: int | None) -> bool:
        if created_at is not None:
            if self._last is not None:
                if created_at > self._last:
                    self._broken = True
                else:
                    self._pairs_in_order += 1
            self._last = created_at
        return not self._broken and self._pairs_in_order > 0


def _usable_now(file: FileObject) -> bool:
    """What await_file_processed would conclude from this answer at once (no status: usable)."""
    return file.status not in (FileStatus.PENDING, FileStatus.ERROR, FileStatus.DELETED)


def upload_filename(job_key: str, sha256: str = "") -> str:
    """The name an upload carries at the gateway: how a retry recognises its own.

    The content's hash is part of it, so a later run under the same job key (a
    reused workflow id) whose input changed, even to one of the same size,
    uploads its own file instead of adopting the earlier run's.
    """
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", job_key)[:200]
    digest = re.sub(r"[^0-9a-f]", "", sha256.lower())[:16]
    return f"{stem}.{digest}.jsonl" if digest else f"{stem}.jsonl"


def _checkpoint() -> ValidatedUpload:
    """How far an earlier attempt of this validate-and-upload got, by its last heartbeat."""
    details = activity.info().heartbeat_details
    if not details:
        return ValidatedUpload()
    try:
        return ValidatedUpload.model_validate(details[0])
    except ValidationError:
        return ValidatedUpload()


def _refused_since(details: Sequence[Any]) -> datetime | None:
    """Since when the gateway refused an earlier attempt of this watch, by its last heartbeat."""
    if not details:
        return None
    try:
        return BatchWatch.model_validate(details[0]).refused_since
    except ValidationError:
        return None


def _submit_checkpoint() -> SubmittedBatch:
    """How far an earlier attempt of this submit got, by its last heartbeat."""
    details = activity.info().heartbeat_details
    if not details:
        return SubmittedBatch()
    try:
        return SubmittedBatch.model_validate(details[0])
    except ValidationError:
        return SubmittedBatch()


def _with_checkpoint(exc: ApplicationError, done: SubmittedBatch) -> ApplicationError:
    """The same failure, with what the submit had done as its last detail."""
    return ApplicationError(
        exc.message,
        *exc.details,
        done.model_dump(mode="json"),
        type=exc.type,
        non_retryable=exc.non_retryable,
        next_retry_delay=exc.next_retry_delay,
        category=exc.category,
    )


def _sha256_of(path: Path) -> str:
    with path.open("rb") as stream:
        return hashlib.file_digest(stream, "sha256").hexdigest()


class BatchActivities:
    def __init__(
        self,
        client: GatewayClient,
        storage: Storage,
        *,
        attach_any_batch: bool = False,
        fallback_poll_seconds: float | None = None,
    ) -> None:
        """attach_any_batch: the operator's choice (BATCH_ATTACH_ANY_BATCH) to let jobs
        attach to batches that are not theirs (made by hand, by another tool)."""
        self.client = client
        self.storage = storage
        # Seen at a create: the gateway answers batches without the job key.
        self._drops_metadata = False
        self.attach_any_batch = attach_any_batch
        # Set where batch events arrive (webhooks/): a watch reads its batch this rarely.
        self.fallback_poll_seconds = fallback_poll_seconds

    @activity.defn
    async def validate_input(self, request: ValidateInputRequest) -> InputSummary:
        async with temporal_failures(), heartbeating():
            return await self._validate(request)

    @activity.defn
    async def upload_input(self, request: UploadInputRequest) -> UploadedInput:
        # Heartbeats cover the look-up too: a dead worker is noticed at any point.
        async with temporal_failures(), heartbeating():
            return await self._upload(request)

    @activity.defn
    async def validate_and_upload(self, request: ValidateAndUploadRequest) -> ValidatedUpload:
        """validate_input, then upload_input, in one step: one trip through Temporal fewer.

        Bad input still fails at once, naming file, line and field. The heartbeat
        carries what is done so far, so a retry after the worker died neither
        validates again nor uploads a second file when its predecessor got that far.
        """
        done = _checkpoint()
        async with temporal_failures(), heartbeating(lambda: done):
            async for reached in self._validate_and_upload(request, _checkpoint()):
                done = reached
            return done

    async def _validate_and_upload(
        self, request: ValidateAndUploadRequest, done: ValidatedUpload
    ) -> AsyncIterator[ValidatedUpload]:
        """From an earlier attempt's checkpoint, each checkpoint as it is reached."""
        if done.summary is None:
            done = ValidatedUpload(summary=await self._validate(request.validation))
            yield done
        summary = done.summary
        assert summary is not None
        if done.uploaded is None:
            try:
                async with temporal_failures():
                    uploaded = await self._upload(request.upload_request(summary))
            except ApplicationError as exc:
                # The job ends here, before the workflow learns the index exists.
                if exc.non_retryable:
                    await forget_input_index(
                        self.storage, request.validation.output_path, summary.sha256
                    )
                raise
            yield ValidatedUpload(summary=summary, uploaded=uploaded)
        elif not done.uploaded.adopted:
            activity.logger.info("adopting earlier upload %s", done.uploaded.file_id)
            yield ValidatedUpload(
                summary=summary, uploaded=done.uploaded.model_copy(update={"adopted": True})
            )
        else:
            yield done

    async def _validate(self, request: ValidateInputRequest) -> InputSummary:
        # Fail on a bad results location now, not after a 24h batch.
        await self.storage.check(request.output_path)
        await self.storage.check(request.errors_path)
        if request.replace_results is False:
            await refuse_others_results(
                self.storage,
                (request.output_path, request.errors_path),
                activity.info().workflow_id,
            )
        # Sized before it is read: an object store's input is downloaded whole.
        size = await self.storage.size(request.input_path)
        if size is not None and size > request.limits.max_bytes:
            raise InputProblems(
                request.input_path,
                [
                    f"{request.input_path}: {size} bytes is over the limit of "
                    f"{request.limits.max_bytes} bytes per file"
                ],
            )
        async with self.storage.reading(request.input_path) as path:
            # A thread, so a 200 MB file does not stall the other jobs on this worker.
            valid = await asyncio.to_thread(
                validate_jsonl,
                path,
                label=request.input_path,
                endpoint=request.endpoint,
                limits=request.limits,
            )
        # Collection joins on this, not on an input its owner may rewrite meanwhile.
        index = input_index_location(request.output_path, valid.sha256)
        async with self.storage.atomic_write(index) as local:
            await asyncio.to_thread(
                write_input_index,
                local,
                input_path=request.input_path,
                sha256=valid.sha256,
                custom_ids=valid.custom_ids,
            )
        activity.logger.info(
            "input valid: %d requests, %d bytes, model %s",
            valid.requests,
            valid.bytes,
            valid.model,
        )
        return InputSummary(
            requests=valid.requests,
            bytes=valid.bytes,
            model=valid.model,
            sha256=valid.sha256,
            input_tokens=valid.input_tokens,
            largest_request_tokens=valid.largest_request_tokens,
            largest_request_id=valid.largest_request_id,
        )

    async def _upload(self, request: UploadInputRequest) -> UploadedInput:
        filename = upload_filename(request.job_key, request.sha256)
        # Only a retry can have an earlier attempt's upload to adopt: the first
        # attempt skips the listing (pages of files, each call a chance to fail).
        if activity.info().attempt > 1:
            existing = await self._find_upload(filename, request.bytes)
            if existing is not None:
                activity.logger.info("adopting earlier upload %s", existing.id)
                return UploadedInput(
                    file_id=existing.id,
                    bytes=request.bytes,
                    adopted=True,
                    ready=_usable_now(existing),
                )
        async with self.storage.reading(request.input_path) as path:
            # The content, not just the size: a same-size edit after validation
            # would otherwise send requests that were never checked.
            ensure_unchanged(
                request.input_path,
                validated_sha256=request.sha256,
                found_sha256=await asyncio.to_thread(_sha256_of, path),
                since="it was validated",
                advice="start the job again",
            )
            uploaded = await self.client.upload_file(path, filename=filename)
        activity.logger.info("uploaded %s as %s", request.input_path, uploaded.id)
        return UploadedInput(
            file_id=uploaded.id,
            bytes=uploaded.bytes or request.bytes,
            adopted=False,
            ready=_usable_now(uploaded),
        )

    async def _find_upload(self, filename: str, size: int) -> FileObject | None:
        try:
            scanned = 0
            async for item in self.client.iter_files(purpose="batch"):
                if item.filename == filename and (item.bytes in (None, size)):
                    return item
                scanned += 1
                if scanned >= LOOKUP_MAX_OBJECTS:
                    break
        except RouteNotSupportedError as exc:
            activity.logger.warning(
                "the gateway does not list files (%s); uploading without a look-up", exc.status_code
            )
        return None

    @activity.defn
    async def create_batch(self, request: CreateBatchRequest) -> BatchSnapshot:
        mark = PostMark()
        async with temporal_failures(), heartbeating(mark.details):
            return await self._create(request, mark)

    @activity.defn
    async def submit_batch(self, request: SubmitBatchRequest) -> SubmittedBatch:
        """validate_and_upload, then create_batch, in one step: one trip through Temporal fewer.

        Its heartbeat carries both steps' checkpoints: what is validated and
        uploaded, and the create's mark, set from the attempt's start as
        create_batch's is. A retry goes on from there, and looks for the batch
        before creating. A failure once validated carries the checkpoint as its
        last detail, so the workflow can look for a batch and clean up; one
        before it carries none, as nothing was made.
        """
        done = _submit_checkpoint()
        mark = PostMark(
            lambda m: done.model_copy(
                update={
                    "post_may_be_out": m.post_may_be_out,
                    "answer_timed_out": m.answer_timed_out,
                    "created_batch_id": m.created_batch_id,
                }
            )
        )
        async with temporal_failures(), heartbeating(mark.details):
            steps = ValidateAndUploadRequest(validation=request.validation, job_key=request.job_key)
            earlier = ValidatedUpload(summary=done.summary, uploaded=done.uploaded)
            try:
                async for reached in self._validate_and_upload(steps, earlier):
                    done = SubmittedBatch(summary=reached.summary, uploaded=reached.uploaded)
                return await self._create_once_uploaded(request, done, mark)
            except asyncio.CancelledError:
                # The job is cancelled before the workflow learns the index exists.
                details = activity.cancellation_details()
                if done.summary is not None and details is not None and details.cancel_requested:
                    await forget_input_index(
                        self.storage, request.validation.output_path, done.summary.sha256
                    )
                raise

    async def _create_once_uploaded(
        self, request: SubmitBatchRequest, done: SubmittedBatch, mark: PostMark
    ) -> SubmittedBatch:
        """submit_batch's create: none while the upload is not ready; a quota refusal returned."""
        uploaded = done.uploaded
        assert uploaded is not None
        if not uploaded.ready:
            return done  # the workflow waits until the gateway has processed it
        try:
            async with temporal_failures():
                batch = await self._create(request.create_request(uploaded), mark)
        except ApplicationError as exc:
            if exc.type == FAILURE_QUOTA_REFUSED:
                return done.model_copy(update={"refused": QuotaRefusal.of(exc.details)})
            raise _with_checkpoint(exc, done) from None
        return done.model_copy(update={"batch": batch})

    async def _create(self, request: CreateBatchRequest, mark: PostMark) -> BatchSnapshot:
        info = activity.info()
        answered = created_batch(info.heartbeat_details)
        if answered is not None:
            # An earlier attempt heard its POST answered, and was lost before it returned.
            activity.logger.info("adopting batch %s, the answer to an earlier attempt", answered)
            return snapshot(await self.client.get_batch(answered), adopted=True)
        # An earlier attempt's POST may have made a batch no look-up here can see.
        if marked(info.heartbeat_details) and not await self._lists_batches():
            raise _create_outcome_unknown(
                request.job_key,
                "an earlier attempt's worker was lost while its POST /batches may have "
                "been in flight",
            )
        existing = None
        # A fresh input has no batch before this step's first attempt; a retry, or an
        # input adopted from an earlier run, may, and looks first. The look after
        # creating runs on every attempt: it closes the two-attempts-alive window.
        if not request.fresh_input or info.attempt > 1:
            existing = await self._keep_one_batch(
                request.job_key, request.not_before, input_file_id=request.input_file_id
            )
        if existing is None and timed_out(info.heartbeat_details):
            # An earlier POST got no answer in time (a timeout, a 504): the provider may still
            # be making its batch. Look again until its delay has passed before creating again.
            existing = await self._look_until_settled(request, mark)
        if existing is not None:
            activity.logger.info("adopting batch %s created by an earlier attempt", existing.id)
            return snapshot(existing, adopted=True)
        await mark.before_post()
        # Shielded from a cancel: once out, the POST's answer is the only word on its batch.
        post = asyncio.ensure_future(
            self.client.create_batch(
                input_file_id=request.input_file_id,
                endpoint=request.endpoint,
                completion_window=request.completion_window,
                metadata={**request.metadata, JOB_KEY_METADATA: request.job_key},
            )
        )
        try:
            batch = await asyncio.shield(post)
        except asyncio.CancelledError:
            return await self._answer_despite_cancel(post, mark)
        except GatewayError as exc:
            if exc.outcome_unknown:
                if not await self._lists_batches():
                    answer = f"HTTP {exc.status_code}" if exc.status_code else "no answer"
                    raise _create_outcome_unknown(
                        request.job_key, f"its create got {answer}"
                    ) from None
                if exc.timed_out:
                    await mark.no_answer_in_time()
                raise
            await mark.nothing_made()
            if _quota_refusal(exc):
                raise _quota_refused(exc.message, exc.retry_after) from None
            if isinstance(exc, InputFileNotReadyError):
                await self._give_up_on_pending(request)
            raise
        if batch.metadata.get(JOB_KEY_METADATA) != request.job_key and not self._drops_metadata:
            self._drops_metadata = True
            activity.logger.warning(
                "the gateway at %s answered batch %s without its metadata %s: it drops the "
                "job key, so a retried create could not find its batch by it; this worker "
                "treats it as a gateway that cannot list batches",
                self.client.settings.base_url,
                batch.id,
                JOB_KEY_METADATA,
            )
        if _refused_for_quota(batch):
            await mark.nothing_made()
            reason = "; ".join(e.describe() for e in batch.errors.data)
            raise _quota_refused(f"batch {batch.id} failed at once: {reason}", None)
        activity.logger.info("created batch %s", batch.id)
        # Its id at Temporal at once, for a retry to adopt. The first attempt on a fresh
        # input: no attempt before it, and none after it yet if Temporal still takes its
        # heartbeat (a retry looks before creating).
        current = await mark.answered(batch.id)
        if request.fresh_input and info.attempt == 1 and current:
            return snapshot(batch)
        keeper = await self._keep_one_batch(
            request.job_key, request.not_before, batch, input_file_id=request.input_file_id
        )
        assert keeper is not None
        return snapshot(keeper, adopted=keeper.id != batch.id)

    async def _answer_despite_cancel(
        self, post: asyncio.Future[Batch], mark: PostMark
    ) -> BatchSnapshot:
        """A cancel reached the create while its POST was out: wait for the answer, and
        return the batch it made, which the cancelling workflow then cancels by id."""
        try:
            batch = await post
        except GatewayError:
            raise asyncio.CancelledError(
                "the create was cancelled; its POST made nothing known"
            ) from None
        activity.logger.warning(
            "batch %s was made by a POST a cancel reached; returned for the workflow to cancel",
            batch.id,
        )
        await mark.answered(batch.id)
        return snapshot(batch)

    async def _give_up_on_pending(self, request: CreateBatchRequest) -> None:
        """A create refused for a file still pending: past the job's validating deadline
        since its upload, end the job with the file's id and status instead of retrying."""
        if request.give_up_pending_after_seconds is None:
            return
        found = await self.client.get_file(request.input_file_id)
        overdue = _pending_too_long(found, request.give_up_pending_after_seconds)
        if overdue is None:
            return
        status = found.status.value if found.status is not None else "pending"
        raise ApplicationError(
            f"the gateway still refuses a batch on input file {found.id} as {status!r} "
            f"({found.status_details or 'no details'}) {overdue} after its upload, the job's "
            "validating deadline: giving up (the upload is deleted; start the job again)",
            type=FAILURE_INPUT_FILE_UNUSABLE,
            non_retryable=True,
        )

    async def _look_until_settled(
        self, request: CreateBatchRequest, mark: PostMark
    ) -> Batch | None:
        """Look for the batch of an unanswered POST for CREATE_SETTLE_SECONDS from this retry's
        schedule (its failure plus the retry's back-off; a POST that timed out failed after the
        client's timeout): a provider still making the batch when the gateway gave up shows
        it within that window.
        """
        until = activity.info().current_attempt_scheduled_time + timedelta(
            seconds=CREATE_SETTLE_SECONDS
        )
        while (left := (until - datetime.now(UTC)).total_seconds()) > 0:
            activity.logger.info(
                "an earlier POST /batches of %s went unanswered; looking for its batch for "
                "%.0f s more before creating again",
                request.job_key,
                left,
            )
            await asyncio.sleep(min(CREATE_LOOK_EVERY_SECONDS, left))
            activity.heartbeat(mark.details())
            existing = await self._keep_one_batch(
                request.job_key, request.not_before, input_file_id=request.input_file_id
            )
            if existing is not None:
                return existing
        return None

    async def _lists_batches(self) -> bool:
        """Whether a retry could find a batch by its job key (Kong may not route GET /batches,
        and a gateway that drops metadata lists batches without it).

        Any other failure of the probe says nothing either way: taken as yes, so
        a flaky gateway is retried rather than failing the job.
        """
        if self._drops_metadata:
            return False
        try:
            await self.client.list_batches(limit=1)
        except RouteNotSupportedError:
            return False
        except GatewayError as exc:
            activity.logger.warning("could not tell whether the gateway lists batches: %s", exc)
        return True

    async def _keep_one_batch(
        self,
        job_key: str,
        not_before: datetime,
        created: Batch | None = None,
        *,
        input_file_id: str | None = None,
    ) -> Batch | None:
        """Close the window where two attempts are alive at once and both create.

        An attempt declared dead (its heartbeat timed out) may still be running
        and create a batch after the retry looked and found none. Every attempt
        looks again after creating, keeps the oldest batch of the job (all
        attempts agree on which) and cancels the others while they are still
        validating, before any request is billed.
        """
        found = {
            b.id: b
            for b in await self._job_batches(job_key, not_before)
            # A batch of the same key over another upload (a reused key, a reset
            # workflow) holds other requests: never adopt its results.
            if input_file_id is None or b.input_file_id in (None, input_file_id)
        }
        if created is not None:
            found.setdefault(created.id, created)
        if not found:
            return None
        keeper = _oldest(list(found.values()))
        for other in found.values():
            if other.id == keeper.id or other.status.is_terminal:
                continue
            activity.logger.warning(
                "batch %s duplicates batch %s of the same job (two attempts alive at once); "
                "cancelling it",
                other.id,
                keeper.id,
            )
            try:
                await self.client.cancel_batch(other.id)
            except RouteNotSupportedError:
                activity.logger.warning("the gateway cannot cancel duplicate batch %s", other.id)
        return keeper

    async def _job_batches(self, job_key: str, not_before: datetime) -> list[Batch]:
        """Every batch tagged with this job's key, by a look-back bounded in time and count."""
        oldest = int((not_before - LOOKUP_CLOCK_SKEW).timestamp())
        mine: list[Batch] = []
        newest_first = _NewestFirst()
        try:
            scanned = 0
            async for batch in self.client.iter_batches():
                scanned += 1
                # A batch with our key from before the job started belongs to an
                # earlier run that reused the key, and must not be adopted. Past one,
                # a gateway seen listing newest first holds nothing newer: stop paging.
                seen_in_order = newest_first.saw(batch.created_at)
                if scanned > LOOKUP_MAX_OBJECTS and not seen_in_order:
                    break
                if batch.created_at is not None and batch.created_at < oldest:
                    if seen_in_order:
                        break
                    continue
                # A batch refused for quota never ran: nothing to adopt or cancel.
                if batch.metadata.get(JOB_KEY_METADATA) == job_key and not _refused_for_quota(
                    batch
                ):
                    mine.append(batch)
        except RouteNotSupportedError as exc:
            activity.logger.warning(
                "the gateway does not list batches (%s): a retried create cannot check for "
                "an earlier batch",
                exc.status_code,
            )
        return mine

    @activity.defn
    async def watch_batch(self, request: WatchBatchRequest) -> BatchWatch:
        """Poll inside one attempt until there is news, detached from the worker's slots
        (see activities.watch); inline where there is no client (ActivityEnvironment)."""
        if self.fallback_poll_seconds is not None:
            request = request.model_copy(
                update={"poll_seconds": max(request.poll_seconds, self.fallback_poll_seconds)}
            )
        info = activity.info()
        watch = Watch(
            request,
            self._read_batch,
            refusal_patience_seconds=self.client.settings.refusal_patience_seconds,
            refused_since=_refused_since(info.heartbeat_details),
        )
        try:
            client = activity.client()
        except RuntimeError:
            async with temporal_failures(), heartbeating(watch.details):
                return await watch.run()
        timeout = info.heartbeat_timeout
        every = 20.0 if timeout is None else max(0.5, timeout.total_seconds() / 3)
        detach(client.get_async_activity_handle(task_token=info.task_token), watch, every)
        activity.raise_complete_async()

    async def _read_batch(self, batch_id: str) -> BatchSnapshot:
        return snapshot(await self.client.get_batch(batch_id))

    @activity.defn
    async def await_status_change(self, request: AwaitChangeRequest) -> BatchSnapshot:
        """One poll, for jobs started before watch_batch: unchanged, it fails on purpose
        and Temporal retries it after poll_seconds.

        Retries are not written to history, so a 24h wait costs the same few
        events as a 10 minute one; the last poll's batch is in the heartbeat
        details, which describe() and the Web UI show as live progress.
        """
        async with temporal_failures(), heartbeating():
            batch = await self.client.get_batch(request.batch_id)
        current = snapshot(batch)
        if batch.status.value != request.known_status or batch.status.is_terminal:
            return current
        activity.heartbeat(current)
        counts = current.counts
        progress = (
            f"{counts.completed + counts.failed}/{counts.total} finished, {counts.failed} failed"
            if counts is not None
            else "counts not reported"
        )
        raise ApplicationError(
            f"batch {batch.id} still {batch.status.value}: {progress}",
            current,
            type=FAILURE_BATCH_NOT_CHANGED,
            next_retry_delay=timedelta(seconds=request.poll_seconds),
            # Expected on every poll: not logged as a failure, not counted in failure metrics.
            category=ApplicationErrorCategory.BENIGN,
        )

    @activity.defn
    async def collect_results(self, request: CollectResultsRequest) -> CollectedResults:
        """Publish the results; then, when the request names files, delete them at the gateway.

        Before deleting, the results are recorded at Temporal (activities.collect_record):
        a retry after the delete returns them instead of downloading the deleted output.
        """
        published = published_before(activity.info().heartbeat_details)
        record = PublishRecord(published)
        # One heartbeat from the first byte to the last: reads, downloads, join and deletes.
        async with temporal_failures(), heartbeating(record.details):
            if published is not None:
                activity.logger.info("results published by an earlier attempt; not downloading")
                collected, not_recorded = published, None
            else:
                collected = await self._collect(request)
                not_recorded = None
                if request.gateway_file_ids:
                    not_recorded = await record.record(collected)
            if request.gateway_file_ids is None:
                return collected
            if not_recorded is not None:
                activity.logger.warning("gateway files left: %s", not_recorded)
                files = GatewayFiles(left=dict.fromkeys(request.gateway_file_ids, not_recorded))
            else:
                files = await delete_gateway_files(
                    self.client, request.gateway_file_ids, raise_retryable=False
                )
            return collected.model_copy(update={"gateway_files": files})

    async def _collect(self, request: CollectResultsRequest) -> CollectedResults:
        """Download, join and publish both files; the index, having served, is removed."""
        batch = request.batch
        input_ids, index = await ids_to_join(self.storage, request)
        with tempfile.TemporaryDirectory(prefix="batch-download-") as scratch:
            downloaded: dict[str, Path | None] = {"output": None, "error": None}
            for kind, file_id in (
                ("output", batch.output_file_id),
                ("error", batch.error_file_id),
            ):
                if file_id:
                    target = Path(scratch) / f"{kind}.jsonl"
                    size = await self.client.download_file(file_id, target)
                    activity.logger.info("downloaded %s file %s: %d bytes", kind, file_id, size)
                    downloaded[kind] = target
            collected = await self._write_results(
                request, input_ids, downloaded["output"], downloaded["error"]
            )
        await mark_as_written_by(
            self.storage, (request.output_path, request.errors_path), activity.info().workflow_id
        )
        if index is not None:
            await self._forget_index(index)
        for problem in collected.problems:
            activity.logger.warning("batch %s: %s", batch.id, problem)
        return CollectedResults(
            requests=collected.tally, usage=collected.usage, problems=collected.problems
        )

    async def _forget_index(self, index: str) -> None:
        """The results are published: the index has served. Never a reason to fail the job.

        A retry after this (the worker died before Temporal heard) finds no
        index and joins on the input, as an older workflow's job does.
        """
        await forget_index(self.storage, index)

    async def _write_results(
        self,
        request: CollectResultsRequest,
        input_ids: dict[str, int],
        output_file: Path | None,
        error_file: Path | None,
    ) -> CollectedFiles:
        """Both published once the join has run to its end; a crash mid-join leaves earlier ones."""
        async with (
            self.storage.atomic_write(request.output_path) as results_tmp,
            self.storage.atomic_write(request.errors_path) as errors_tmp,
        ):
            # A thread for the join: it may not stall the other jobs' heartbeats.
            return await asyncio.to_thread(
                self._join, request, input_ids, output_file, error_file, results_tmp, errors_tmp
            )

    def _join(
        self,
        request: CollectResultsRequest,
        input_ids: dict[str, int],
        output_file: Path | None,
        error_file: Path | None,
        results_tmp: Path,
        errors_tmp: Path,
    ) -> CollectedFiles:
        batch = request.batch
        with results_tmp.open("wb") as results_out, errors_tmp.open("wb") as errors_out:
            return collect_results(
                input_ids=input_ids,
                output_file=output_file,
                error_file=error_file,
                results_out=results_out,
                errors_out=errors_out,
                not_run_code=request.not_run_code,
                not_run_message=f"not run: the batch ended {batch.status}",
                batch_counts=batch.counts,
                batch_completed=batch.status == "completed",
                output_file_id=batch.output_file_id,
                error_file_id=batch.error_file_id,
            )

    @activity.defn
    async def cancel_batch(self, request: CancelBatchRequest) -> BatchSnapshot | None:
        """Cancel the job's batch; with no id, every batch with the job's key (unrecorded ones)."""
        async with temporal_failures(), heartbeating():
            if request.batch_id is not None:
                return await self._cancel_one(request.batch_id)
            found = [
                batch
                for batch in await self._job_batches(request.job_key, request.not_before)
                if await self._runs_jobs_input(batch, request)
            ]
            if not found:
                return None
            for batch in found:
                if not batch.status.is_terminal:
                    await self._cancel_one(batch.id)
            return snapshot(await self.client.get_batch(_oldest(found).id))

    async def _runs_jobs_input(self, batch: Batch, request: CancelBatchRequest) -> bool:
        """Whether a batch tagged with the job's key runs the job's own input.

        The key is the caller's to choose: by itself it could name another job's
        batches. A job that knows its upload or its input cancels only batches of it.
        """
        if request.input_file_id is not None:
            return batch.input_file_id == request.input_file_id
        if request.input_sha256 is not None:
            return _uploaded_from(await self._input_file(batch.input_file_id), request.input_sha256)
        return True  # a job from before, or cancelled before it read its input

    async def _cancel_one(self, batch_id: str) -> BatchSnapshot:
        try:
            cancelled = await self.client.cancel_batch(batch_id)
        except RouteNotSupportedError as exc:
            activity.logger.warning(
                "the gateway has no cancel route (%s); batch %s keeps running",
                exc.status_code,
                batch_id,
            )
            return snapshot(await self.client.get_batch(batch_id))
        except GatewayError as exc:
            if exc.status_code not in (400, 409):
                raise
            # Refused because it is already ending: that is what we asked for.
            current = await self.client.get_batch(batch_id)
            if not (current.status.is_terminal or current.status is BatchStatus.CANCELLING):
                raise
            return snapshot(current)
        activity.logger.info("cancel requested for batch %s", batch_id)
        return snapshot(cancelled)

    @activity.defn
    async def await_file_processed(self, request: AwaitFileRequest) -> FileSnapshot:
        """One look at an uploaded file; a batch on it is refused until the gateway processed it.

        Still processing (Azure: pending, running), it fails benignly and Temporal
        retries it after poll_seconds, as await_status_change does. A gateway that
        reports no status, or OpenAI's "uploaded", is taken as ready: a create it
        refuses after all is retried (InputFileNotReadyError).
        """
        async with temporal_failures(), heartbeating():
            found = await self.client.get_file(request.file_id)
        current = FileSnapshot(
            id=found.id,
            status=None if found.status is None else found.status.value,
            status_details=found.status_details,
            bytes=found.bytes,
        )
        if found.status is FileStatus.PENDING:
            activity.heartbeat(current)
            overdue = _pending_too_long(found, request.give_up_after_seconds)
            if overdue is not None:
                raise ApplicationError(
                    f"the gateway still reports input file {found.id} as "
                    f"{found.status.value!r} ({found.status_details or 'no details'}) "
                    f"{overdue} after its upload, the job's validating deadline: giving up "
                    "(the upload is deleted; start the job again, or ask the gateway's owner "
                    "why its files are not processed)",
                    current,
                    type=FAILURE_INPUT_FILE_UNUSABLE,
                    non_retryable=True,
                )
            raise ApplicationError(
                f"input file {found.id} still being processed by the gateway",
                current,
                type=FAILURE_FILE_NOT_PROCESSED,
                next_retry_delay=timedelta(seconds=request.poll_seconds),
                category=ApplicationErrorCategory.BENIGN,
            )
        if found.status in (FileStatus.ERROR, FileStatus.DELETED):
            what = (
                f"failed to process input file {found.id}: "
                f"{found.status_details or 'it gave no reason'}"
                if found.status is FileStatus.ERROR
                else f"deleted input file {found.id} before its batch was created"
            )
            raise ApplicationError(
                f"the gateway {what}",
                current,
                type=FAILURE_INPUT_FILE_UNUSABLE,
                non_retryable=True,
            )
        return current

    @activity.defn
    async def attach_batch(self, request: AttachBatchRequest) -> BatchSnapshot:
        """Read a batch made outside this job, and refuse one that runs another input.

        The gateway's input file cannot be downloaded (OpenAI refuses purpose
        "batch"), so its size and the batch's endpoint are what is compared; the
        join by custom_id at collection catches what they cannot.
        """
        async with temporal_failures(), heartbeating():
            try:
                batch = await self.client.get_batch(request.batch_id)
            except NotFoundError:
                raise _not_for_input(request, "the gateway has no such batch") from None
            input_file = await self._input_file(batch.input_file_id)
            if not self.attach_any_batch and not _is_own(batch, input_file, request):
                # Said before any comparison: a batch not the job's tells it nothing.
                raise _not_for_input(
                    request,
                    "it is not this job's: not tagged with its job key, and its input file "
                    "was not uploaded from this input (a worker with "
                    f"{ENV_ATTACH_ANY_BATCH}=true lets jobs attach to any batch)",
                )
            if batch.endpoint and batch.endpoint != request.endpoint:
                raise _not_for_input(
                    request, f"it runs endpoint {batch.endpoint}, the job {request.endpoint}"
                )
            counted = batch.request_counts.total if batch.request_counts else 0
            if request.input_requests is not None and counted and counted != request.input_requests:
                # The gateway's own count: it holds even once the batch's input file is deleted.
                raise _not_for_input(
                    request,
                    f"it runs {counted} requests, {request.input_path} holds "
                    f"{request.input_requests}",
                )
            if batch.input_file_id:
                size = input_file.bytes if input_file is not None else None
                if size is not None and size != request.input_bytes:
                    raise _not_for_input(
                        request,
                        f"its input file {batch.input_file_id} holds {size} bytes, "
                        f"{request.input_path} {request.input_bytes}",
                    )
            activity.logger.info("attached to batch %s (%s)", batch.id, batch.status.value)
            return snapshot(batch, adopted=True)

    async def _input_file(self, file_id: str | None) -> FileObject | None:
        if file_id is None:
            return None
        try:
            return await self.client.get_file(file_id)
        except NotFoundError:
            # Deleted since (allowed once the batch exists): nothing left to compare.
            return None

    @activity.defn
    async def clean_up(self, request: CleanUpRequest) -> GatewayFiles:
        """The job has ended: remove its input index, delete its files at the gateway.

        Safe to run twice (a missing index or file is no error); never fails for
        what it could not remove, except a gateway failing retryably (retried).
        """
        async with temporal_failures(), heartbeating():
            await forget_input_index(self.storage, request.output_path, request.input_sha256)
            return await delete_gateway_files(self.client, request.gateway_file_ids)

    def all(self) -> list[Callable[..., Any]]:
        """The bound methods a worker registers."""
        return [
            self.validate_input,
            self.upload_input,
            self.create_batch,
            self.await_status_change,
            self.watch_batch,
            self.collect_results,
            self.cancel_batch,
            self.await_file_processed,
            self.attach_batch,
            self.clean_up,
            self.validate_and_upload,
            self.submit_batch,
        ]


def _create_outcome_unknown(job_key: str, what_happened: str) -> ApplicationError:
    return ApplicationError(
        f"job {job_key}: the gateway may hold a batch tagged {JOB_KEY_METADATA}={job_key}: "
        f"{what_happened} and the gateway cannot list batches, so the job did not "
        "create again (a second batch would bill twice); find that batch at the gateway and "
        "attach a job to it (starter.py attach BATCH_ID, or the input's batch_id), or start "
        "the job again if there is none",
        type=FAILURE_CREATE_OUTCOME_UNKNOWN,
        non_retryable=True,
    )


def _pending_too_long(file: FileObject, limit_seconds: float | None) -> str | None:
    """How long the file has been pending, once that passed the limit; else None.

    From the gateway's created_at, or, where it gives none, from this step's first attempt.
    """
    if limit_seconds is None:
        return None
    if file.created_at is not None:
        since = datetime.fromtimestamp(file.created_at, tz=UTC)
    else:
        since = activity.info().scheduled_time
    age = datetime.now(UTC) - since
    if age.total_seconds() < limit_seconds:
        return None
    return (
        f"{age.total_seconds() / 3600:.1f} h"
        if age >= timedelta(hours=1)
        else f"{age.total_seconds():.0f} s"
    )


def _quota_refusal(exc: GatewayError) -> bool:
    """A create refused for the enqueued-token quota (Azure's 400, a 429): no batch was made.

    By code or by the providers' words (contracts.quota); a 4xx only, since a 5xx may
    have made the batch."""
    if exc.status_code is None or not 400 <= exc.status_code < 500:
        return False
    return is_quota_refusal(exc.code, exc.message)


def _refused_for_quota(batch: Batch) -> bool:
    """A batch the gateway failed for its quota, at once (Azure's fail-fast) or at the end of
    validation (OpenAI's): it never ran."""
    return (
        batch.status is BatchStatus.FAILED
        and not _ran_any(batch)
        and any(is_quota_refusal(error.code, error.message) for error in batch.errors.data)
    )


def _ran_any(batch: Batch) -> bool:
    counts = batch.request_counts
    return bool(
        batch.output_file_id
        or batch.error_file_id
        or (counts is not None and counts.completed + counts.failed)
    )


def _quota_refused(gateway_message: str, retry_after: float | None) -> ApplicationError:
    """The workflow decides what a refusal means: wait and create again, or, as a shard,
    fail so the parent admits it later. Details: the gateway's words, its Retry-After."""
    return ApplicationError(
        f"the gateway refused the batch for its enqueued-token quota "
        f"[{QUOTA_REFUSAL_CODE}]: {gateway_message}",
        gateway_message,
        retry_after,
        type=FAILURE_QUOTA_REFUSED,
        non_retryable=True,
    )


def _uploaded_from(file: FileObject | None, sha256: str) -> bool:
    """Whether a gateway file carries the name this project gives an upload of that input."""
    suffix = upload_filename("", sha256)  # ".<digest>.jsonl"
    named = file.filename if file is not None else None
    return bool(sha256) and named is not None and named.endswith(suffix)


def _is_own(batch: Batch, input_file: FileObject | None, request: AttachBatchRequest) -> bool:
    """A batch tagged with the job's key, or running a file uploaded from the job's input."""
    if request.job_key is None or request.input_sha256 is None:
        return True  # a job started before attach checked whose a batch is
    if batch.metadata.get(JOB_KEY_METADATA) == request.job_key:
        return True
    return _uploaded_from(input_file, request.input_sha256)


def _not_for_input(request: AttachBatchRequest, why: str) -> ApplicationError:
    return ApplicationError(
        f"cannot attach {request.input_path} to batch {request.batch_id}: {why}",
        type=FAILURE_BATCH_NOT_FOR_INPUT,
        non_retryable=True,
    )
