"""Inputs and outputs of the activities, as the workflow sees them.

Each ignores fields it does not know: mid-deploy, a newer worker's activity may
answer an older worker's workflow (and the other way round), and a field it
refused would fail the step. Fields are only ever added, never removed or retyped.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from contracts.batch_status import BatchStatus
from contracts.job import BatchCounts, InputLimits, RequestTally, TokenTotals


class _Step(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ValidateInputRequest(_Step):
    input_path: str
    endpoint: str
    limits: InputLimits
    output_path: str
    errors_path: str


class InputSummary(_Step):
    requests: int
    bytes: int
    model: str
    sha256: str


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


class AwaitChangeRequest(_Step):
    batch_id: str
    known_status: BatchStatus
    poll_seconds: float


class CollectResultsRequest(_Step):
    batch: BatchSnapshot
    input_path: str
    output_path: str
    errors_path: str
    not_run_code: str = Field(
        description="Error code written for input requests the batch never ran."
    )
    input_sha256: str | None = Field(
        default=None, description="The input as validated; a changed file cannot be joined."
    )


class CollectedResults(_Step):
    requests: RequestTally
    usage: TokenTotals
    problems: list[str] = Field(
        default_factory=list, description="Integrity findings that make the job not a success."
    )


class CancelBatchRequest(_Step):
    batch_id: str | None = Field(
        default=None, description="None when creation may have happened but was not recorded."
    )
    job_key: str
    not_before: datetime


class AwaitFileRequest(_Step):
    file_id: str
    poll_seconds: float


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
    input_path: str
    input_bytes: int
    endpoint: str
