"""Inputs and outputs of the activities, as the workflow sees them.

Each ignores fields it does not know: mid-deploy, a newer worker's activity may
answer an older worker's workflow (and the other way round), and a field it
refused would fail the step. Fields are only ever added, never removed or retyped.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from contracts.batch_status import BatchStatus
from contracts.job import BatchCounts, GatewayFiles, InputLimits, RequestTally, TokenTotals


class _Step(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ValidateInputRequest(_Step):
    input_path: str
    endpoint: str
    limits: InputLimits
    output_path: str
    errors_path: str
    replace_results: bool | None = Field(
        default=None,
        description="False: results already there that this job did not write are refused. "
        "None from jobs started before results were create-only.",
    )


class InputSummary(_Step):
    requests: int
    bytes: int
    model: str
    sha256: str
    input_tokens: int | None = Field(
        default=None,
        description="Estimated input tokens of every request (shards.tokens): what the "
        "enqueued-token quota counts. None from workers before the estimate.",
    )
    largest_request_tokens: int | None = None
    largest_request_id: str | None = Field(
        default=None, description="The custom_id of the request with the most input tokens."
    )


class UploadInputRequest(_Step):
    input_path: str
    job_key: str
    sha256: str
    bytes: int


class UploadedInput(_Step):
    file_id: str
    bytes: int
    adopted: bool = Field(description="True when an upload from an earlier attempt was reused.")
    ready: bool = Field(
        default=False,
        description="The gateway's answer already lets a batch use the file (not pending, "
        "not failed): no step waits until it is processed.",
    )


class ValidateAndUploadRequest(_Step):
    """Validate the input, then upload it: the two steps that always run back to back, as one."""

    validation: ValidateInputRequest
    job_key: str

    def upload_request(self, summary: InputSummary) -> UploadInputRequest:
        """The upload of the input ``summary`` describes, once validated."""
        return UploadInputRequest(
            input_path=self.validation.input_path,
            job_key=self.job_key,
            sha256=summary.sha256,
            bytes=summary.bytes,
        )


class ValidatedUpload(_Step):
    """What a validate-and-upload step found and uploaded; partial while it runs (its heartbeat).

    A retry of the step goes on from its last heartbeat: validated, it does not
    validate again; uploaded, it adopts that file by id without listing files.
    """

    summary: InputSummary | None = None
    uploaded: UploadedInput | None = None


class CreateBatchRequest(_Step):
    input_file_id: str
    endpoint: str
    completion_window: str
    metadata: dict[str, str]
    job_key: str
    not_before: datetime = Field(description="The job's start: older batches are not its own.")
    fresh_input: bool = Field(
        default=False,
        description="The input file was uploaded by this run, the first of its job (no retry, "
        "no reset): no batch can use it before the first create attempt, which need not look.",
    )
    give_up_pending_after_seconds: float | None = Field(
        default=None,
        description="The job's validating deadline: a create refused because the file is "
        "still pending this long after its upload ends the job; None: retried without end.",
    )


class BatchSnapshot(_Step):
    """The parts of a gateway batch object the workflow acts on."""

    id: str
    status: BatchStatus
    input_file_id: str | None = None
    output_file_id: str | None = None
    error_file_id: str | None = None
    counts: BatchCounts | None = None
    created_at: int | None = None
    errors: list[str] = Field(default_factory=list)
    adopted: bool = False
    # The gateway's own clock (unix seconds) of each phase's start, where it says:
    # a phase's deadline runs from these, not from when a worker last looked.
    in_progress_at: int | None = None
    finalizing_at: int | None = None
    cancelling_at: int | None = None

    def phase_started_at(self) -> int | None:
        """When the batch entered its current status, by the gateway's clock, if it says."""
        return {
            BatchStatus.VALIDATING: self.created_at,
            BatchStatus.IN_PROGRESS: self.in_progress_at,
            BatchStatus.FINALIZING: self.finalizing_at,
            BatchStatus.CANCELLING: self.cancelling_at,
        }.get(self.status)

    @property
    def finished(self) -> int:
        return 0 if self.counts is None else self.counts.completed + self.counts.failed


class SubmitBatchRequest(_Step):
    """Validate, upload, then create the batch: the three steps a new job runs back to back."""

    validation: ValidateInputRequest
    job_key: str
    endpoint: str
    completion_window: str
    metadata: dict[str, str]
    not_before: datetime = Field(description="The job's start: older batches are not its own.")
    first_run: bool = Field(
        description="The first run of its job (no retried or reset run before it): an upload "
        "this step makes itself is fresh, so its first create attempt need not look first."
    )
    give_up_pending_after_seconds: float | None = Field(
        default=None, description="As CreateBatchRequest's: the job's validating deadline."
    )

    def create_request(self, uploaded: UploadedInput) -> CreateBatchRequest:
        """The create this step runs once ``uploaded`` is at the gateway."""
        return CreateBatchRequest(
            input_file_id=uploaded.file_id,
            endpoint=self.endpoint,
            completion_window=self.completion_window,
            metadata=self.metadata,
            job_key=self.job_key,
            not_before=self.not_before,
            fresh_input=self.first_run and not uploaded.adopted,
            give_up_pending_after_seconds=self.give_up_pending_after_seconds,
        )


class QuotaRefusal(_Step):
    """A create the gateway refused for its enqueued-token quota: nothing was made."""

    message: str = Field(description="The gateway's own words.")
    retry_after: float | None = None

    @classmethod
    def of(cls, details: Sequence[Any]) -> QuotaRefusal:
        """From a QuotaRefused failure's details: the gateway's words, its Retry-After."""
        said, retry_after = details
        return cls(message=str(said), retry_after=retry_after)


class SubmittedBatch(_Step):
    """What a submit step did; partial in its heartbeat while it runs, and as the last
    detail of a failure after validation (so the job knows its upload and index).

    No batch when the upload must first be processed (Azure's pending) or the create
    was refused for quota: the workflow goes on from the upload with the separate steps.
    """

    summary: InputSummary | None = None
    uploaded: UploadedInput | None = None
    post_may_be_out: bool = Field(
        default=False, description="The create's mark (activities.create_mark), in the checkpoint."
    )
    answer_timed_out: bool = Field(
        default=False, description="The create's POST got no answer in time (create_mark)."
    )
    created_batch_id: str | None = Field(
        default=None, description="The batch the create's POST was answered with, if it was."
    )
    batch: BatchSnapshot | None = None
    refused: QuotaRefusal | None = None


class AwaitChangeRequest(_Step):
    batch_id: str
    known_status: BatchStatus
    poll_seconds: float


class WatchBatchRequest(_Step):
    """Watch a batch from one worker until there is something the workflow must act on."""

    batch: BatchSnapshot = Field(description="The batch as the workflow last saw it.")
    poll_seconds: float
    return_by: datetime = Field(
        description="Return after the first read at or past this time (the phase's deadline, "
        "or the next scheduled refresh), whatever the batch is doing."
    )
    report_every: int | None = Field(
        default=None,
        description="Return when this many more requests finished; None: only on a status change.",
    )
    report_error_after_seconds: float | None = Field(
        default=None,
        description="Return when gateway reads have failed (retryably) for this long; None: never.",
    )
    report_changes_after_seconds: float | None = Field(
        default=None,
        description="Report a new non-terminal status or a step of progress only once the "
        "watch has run this long (a terminal status, the return time and a failing gateway at "
        "once), so a batch that passes through its statuses within it costs one watch; "
        "None: at once.",
    )
    refused_since: datetime | None = Field(
        default=None,
        description="Since when the gateway refuses to read the batch (401/403/404), as an "
        "earlier watch saw it: the worker's patience runs from here, not from this watch.",
    )


class BatchWatch(_Step):
    """What a watch saw last: the batch, and the gateway's error if its last read failed."""

    batch: BatchSnapshot
    gateway_error: str | None = None
    polls: int = 0
    refused_since: datetime | None = Field(
        default=None,
        description="Since when the gateway refuses to read the batch (401/403/404); None "
        "once a read works.",
    )


class CollectResultsRequest(_Step):
    batch: BatchSnapshot
    input_path: str
    output_path: str
    errors_path: str
    not_run_code: str = Field(
        description="Error code written for input requests the batch never ran."
    )
    input_sha256: str | None = Field(
        default=None,
        description="The input as validated: names the index of its custom_ids that "
        "collection joins on (beside output_path), so the input itself may change meanwhile.",
    )
    gateway_file_ids: list[str] | None = Field(
        default=None,
        description="Files to delete at the gateway once the results are published (ones this "
        "job made, of a batch that ended); None: a clean-up step after it deletes them.",
    )


class CollectedResults(_Step):
    requests: RequestTally
    usage: TokenTotals
    problems: list[str] = Field(
        default_factory=list, description="Integrity findings that make the job not a success."
    )
    gateway_files: GatewayFiles | None = Field(
        default=None,
        description="What became of the files the request named for deletion; None when it "
        "named none (or an older worker collected, and left them to the clean-up step).",
    )


class CancelBatchRequest(_Step):
    batch_id: str | None = Field(
        default=None, description="None when creation may have happened but was not recorded."
    )
    job_key: str
    not_before: datetime
    input_file_id: str | None = Field(
        default=None,
        description="The job's upload, when known: by key, only batches that run it are "
        "cancelled (a caller-chosen key cannot reach another job's batches).",
    )
    input_sha256: str | None = Field(
        default=None,
        description="The job's validated input, when known and the upload is not: only "
        "batches whose input file was uploaded from it.",
    )


class AwaitFileRequest(_Step):
    file_id: str
    poll_seconds: float
    give_up_after_seconds: float | None = Field(
        default=None,
        description="The job's validating deadline: a file still not processed this long after "
        "its upload (the gateway's created_at) ends the job; None: no end.",
    )


class FileSnapshot(_Step):
    """An uploaded file as the gateway last reported it."""

    id: str
    status: str | None = Field(
        default=None, description="uploaded, pending, processed, error or deleted; None: unsaid."
    )
    status_details: str | None = None
    bytes: int | None = None


class AttachBatchRequest(_Step):
    """Adopt a batch that already exists, checking it runs the job's validated input."""

    batch_id: str
    job_key: str | None = Field(
        default=None, description="None from jobs started before attach checked whose it is."
    )
    input_sha256: str | None = None
    input_path: str
    input_bytes: int
    endpoint: str
    input_requests: int | None = Field(
        default=None,
        description="The validated input's requests, checked against the batch's own count "
        "(None from jobs started before this was sent).",
    )


class CleanUpRequest(_Step):
    """What a job leaves behind when it ends: its input index, and its files at the gateway."""

    output_path: str = Field(description="The results location, beside which the index lies.")
    input_sha256: str = Field(description="The input as validated: names its index.")
    gateway_file_ids: list[str] = Field(
        default_factory=list,
        description="Files to delete at the gateway: ones this job made, of a batch that ended.",
    )
