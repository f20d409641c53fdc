"""Inputs and results of BatchJobWorkflow: the contract other workflows (any SDK) call it by.

Only locations, ids, counts and settings cross this boundary: never file
contents, never keys.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from contracts.batch_status import BatchStatus
from contracts.ids import checked_id
from contracts.names import JOB_KEY_METADATA

SUPPORTED_ENDPOINTS = (
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/embeddings",
    "/v1/responses",
)
COMPLETION_WINDOW = "24h"
MAX_METADATA_PAIRS = 16
MAX_METADATA_KEY = 64
MAX_METADATA_VALUE = 512
# The job key travels in batch metadata and in the upload's file name.
MAX_JOB_KEY = 200
MAX_LOCATION_CHARS = 2048
# In output_path and errors_path, replaced at run start by the run's workflow id
# (characters other than letters, digits, '.', '_' and '-' become '_'), so that
# the runs of a schedule each write their own files.
WORKFLOW_ID_PLACEHOLDER = "{workflow_id}"


class _Contract(BaseModel):
    """Decoding ignores fields this code does not know: a newer worker's, mid-deploy.

    Results and progress are read by starters and parent workflows that may run
    older code than the worker that wrote them; a field they refused would fail
    them. Fields are only ever added, never removed or retyped.
    """

    model_config = ConfigDict(extra="ignore")


class _Input(_Contract):
    """What a caller sends: an unknown field is a typo, refused where it was typed.

    The published schema refuses it (additionalProperties: false), and so does
    BatchJobInput.parse at the job's start. Decoding elsewhere (an activity's
    request, a replay) stays lenient, like every other contract.
    """

    model_config = ConfigDict(extra="ignore", json_schema_extra={"additionalProperties": False})


class PhaseDeadlines(_Input):
    """How long the job lets a batch sit in each phase before it cancels it.

    A batch past one of these is cancelled, what finished is collected, and the
    job ends with status deadline_exceeded instead of waiting forever (Azure
    never expires a batch; any gateway can leave one in validating or finalizing).
    """

    validating: timedelta = timedelta(hours=4)
    in_progress: timedelta = timedelta(hours=26)
    finalizing: timedelta = timedelta(hours=4)
    cancelling: timedelta = timedelta(hours=1)

    @field_validator("validating", "in_progress", "finalizing", "cancelling")
    @classmethod
    def _at_least_a_second(cls, value: timedelta, info: ValidationInfo) -> timedelta:
        # Zero would cancel the batch at the first look: never what a caller means.
        if value < timedelta(seconds=1):
            raise ValueError(f"deadlines.{info.field_name} must be at least 1 second")
        return value

    def for_status(self, status: BatchStatus) -> timedelta:
        """The deadline of the phase a batch in this status is in (in_progress for any other)."""
        return {
            BatchStatus.VALIDATING: self.validating,
            BatchStatus.IN_PROGRESS: self.in_progress,
            BatchStatus.FINALIZING: self.finalizing,
            BatchStatus.CANCELLING: self.cancelling,
        }.get(status, self.in_progress)


# The largest batch input any provider takes (Azure with the user's own Blob
# Storage: 1 GB): a job's limits cannot raise the worker's reading past it
# (InputLimits itself also bounds a whole input checked before it is split).
MAX_INPUT_BYTES = 1024 * 1024 * 1024
MAX_INPUT_REQUESTS = 1_000_000


class InputLimits(_Input):
    max_requests: int = Field(default=50_000, ge=1)
    max_bytes: int = Field(default=200 * 1024 * 1024, ge=1)


class QuotaRetry(_Input):
    """How a job waits when the gateway refuses its batch for the enqueued-token quota.

    The quota frees as other batches end, which may take hours: the job tries
    again after `first`, doubling up to `most`, until it has waited `max_wait`;
    then it ends, saying so. Each wait is at least `max_wait` / 400, so a job
    makes at most about 400 refusals (its history stays bounded whatever
    `max_wait` is).
    """

    first: timedelta = timedelta(seconds=30)
    most: timedelta = timedelta(minutes=10)
    max_wait: timedelta = Field(
        default=timedelta(days=3),
        description="How long the job waits for the quota in all before it ends.",
    )

    @field_validator("first", "most", "max_wait")
    @classmethod
    def _at_least_a_second(cls, value: timedelta, info: ValidationInfo) -> timedelta:
        if value < timedelta(seconds=1):
            raise ValueError(f"quota_retry.{info.field_name} must be at least 1 second")
        return value


class BatchJobInput(_Input):
    input_path: str = Field(
        description=(
            "Location of the JSONL input: s3://bucket/key, az://container/blob, gs://bucket/key, "
            "a file:// URI, or a path relative to the workers' BATCH_DATA_DIR."
        )
    )
    endpoint: str = "/v1/chat/completions"
    completion_window: str = COMPLETION_WINDOW
    output_path: str | None = Field(
        default=None,
        description=(
            "Where successful responses go (a location like input_path); default "
            "<input>.output.jsonl, beside the input. "
            "{workflow_id} is replaced by the run's workflow id."
        ),
    )
    errors_path: str | None = Field(
        default=None,
        description=(
            "Where failed and unfinished requests go (a location like input_path); default "
            "<input>.errors.jsonl, beside the input. "
            "{workflow_id} is replaced by the run's workflow id."
        ),
    )
    metadata: dict[str, str] = Field(default_factory=dict)
    poll_interval: timedelta = timedelta(seconds=60)
    heartbeat_timeout: timedelta = Field(
        default=timedelta(seconds=60),
        description="How soon a worker that died mid-step is noticed and the step retried.",
    )
    deadlines: PhaseDeadlines = Field(default_factory=PhaseDeadlines)
    limits: InputLimits = Field(default_factory=InputLimits)
    job_key: str | None = Field(
        default=None,
        max_length=MAX_JOB_KEY,
        description="Idempotency key tagged on the batch; default the workflow id.",
    )
    batch_id: str | None = Field(
        default=None,
        min_length=1,
        description=(
            "Attach to this existing batch (made by hand, or left by a create whose outcome "
            "was unknown) instead of uploading and creating one: the job validates input_path, "
            "checks the batch runs that input, then waits and collects as usual."
        ),
    )
    quota_retry: QuotaRetry | None = Field(
        default_factory=QuotaRetry,
        description=(
            "A create the gateway refuses for its enqueued-token quota (token_limit_exceeded) "
            "is tried again after this back-off, for up to max_wait. None: the job fails at once "
            "with the refusal, for a caller that admits batches itself (the sharded job)."
        ),
    )
    replace_results: bool = Field(
        default=False,
        description=(
            "Write over output_path and errors_path when results are already there. By "
            "default a job refuses at its start to write where results exist that an "
            "earlier run of the same job (the same workflow id) did not write."
        ),
    )
    keep_gateway_files: bool = Field(
        default=False,
        description=(
            "Keep at the gateway the input file this job uploaded and its batch's output and "
            "error files; by default they are deleted once the batch has ended and its results "
            "are collected (Azure allows a limited number of files per resource)."
        ),
    )
    wait_by: Literal["watch", "retries"] = Field(
        default="watch",
        description=(
            "How the job waits for its batch. 'watch' (the default): one activity polls "
            "every poll_interval inside one attempt, heartbeats live counts and returns on "
            "news. 'retries': the earlier design, kept for jobs started before the watch: "
            "one short poll that fails while nothing changed and is retried by Temporal "
            "every poll_interval, so the worker holds nothing between polls, but the Web UI "
            "shows a climbing attempt count and a BatchNotChanged failure while it waits."
        ),
    )

    @classmethod
    def parse(cls, payload: object) -> BatchJobInput:
        """The input as a caller sent it, refusing fields the job does not know (typos)."""
        return cls.model_validate(payload, extra="forbid")

    @field_validator("endpoint")
    @classmethod
    def _known_endpoint(cls, value: str) -> str:
        if value not in SUPPORTED_ENDPOINTS:
            raise ValueError(f"endpoint {value!r} is not one of {', '.join(SUPPORTED_ENDPOINTS)}")
        return value

    @field_validator("completion_window")
    @classmethod
    def _window(cls, value: str) -> str:
        if value != COMPLETION_WINDOW:
            raise ValueError(f"completion_window must be {COMPLETION_WINDOW!r}, got {value!r}")
        return value

    @field_validator("poll_interval", "heartbeat_timeout")
    @classmethod
    def _at_least_a_second(cls, value: timedelta, info: ValidationInfo) -> timedelta:
        if value < timedelta(seconds=1):
            raise ValueError(f"{info.field_name} must be at least 1 second")
        return value

    @field_validator("input_path", "output_path", "errors_path", "job_key")
    @classmethod
    def _location_text(cls, value: str | None, info: ValidationInfo) -> str | None:
        # Locations and the job key reach file systems, URLs, logs and the terminal.
        if value is not None and (
            len(value) > MAX_LOCATION_CHARS or any(ord(ch) < 32 or ord(ch) == 127 for ch in value)
        ):
            raise ValueError(
                f"{info.field_name} holds a control character or is over "
                f"{MAX_LOCATION_CHARS} characters"
            )
        return value

    @field_validator("limits")
    @classmethod
    def _limits_a_batch_can_have(cls, value: InputLimits) -> InputLimits:
        if value.max_bytes > MAX_INPUT_BYTES or value.max_requests > MAX_INPUT_REQUESTS:
            raise ValueError(
                f"limits: a batch's input holds at most {MAX_INPUT_REQUESTS:,} requests and "
                f"{MAX_INPUT_BYTES:,} bytes"
            )
        return value

    @field_validator("batch_id")
    @classmethod
    def _batch_id_shape(cls, value: str | None) -> str | None:
        return None if value is None else checked_id(value, "batch_id")

    @field_validator("metadata")
    @classmethod
    def _metadata(cls, value: dict[str, str]) -> dict[str, str]:
        if len(value) > MAX_METADATA_PAIRS - 1:
            raise ValueError(
                f"metadata holds at most {MAX_METADATA_PAIRS - 1} pairs "
                f"(one of the {MAX_METADATA_PAIRS} is the job key)"
            )
        for key, item in value.items():
            if key == JOB_KEY_METADATA:
                raise ValueError(f"metadata key {key!r} is reserved for the job key")
            if len(key) > MAX_METADATA_KEY or len(item) > MAX_METADATA_VALUE:
                raise ValueError(
                    f"metadata {key!r}: keys up to {MAX_METADATA_KEY} characters, "
                    f"values up to {MAX_METADATA_VALUE}"
                )
        return value

    @model_validator(mode="after")
    def _distinct_paths(self) -> BatchJobInput:
        paths = [self.input_path, self.resolved_output_path, self.resolved_errors_path]
        if len(set(paths)) != len(paths):
            raise ValueError("input_path, output_path and errors_path must all differ")
        return self

    @property
    def resolved_output_path(self) -> str:
        return self.output_path or _beside(self.input_path, "output")

    @property
    def resolved_errors_path(self) -> str:
        return self.errors_path or _beside(self.input_path, "errors")

    def output_paths_for(self, workflow_id: str) -> tuple[str, str]:
        """Results and errors locations of the run with this workflow id (placeholder filled)."""
        return (
            expand_workflow_id(self.resolved_output_path, workflow_id),
            expand_workflow_id(self.resolved_errors_path, workflow_id),
        )


def expand_workflow_id(location: str, workflow_id: str) -> str:
    """location with {workflow_id} replaced by a file-name-safe form of workflow_id."""
    if WORKFLOW_ID_PLACEHOLDER not in location:
        return location
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", workflow_id).lstrip(".") or "_"
    return location.replace(WORKFLOW_ID_PLACEHOLDER, safe)


def results_owner_location(results_path: str) -> str:
    """The hidden file beside a results location naming the job (workflow id) that wrote it.

    Workers write it (activities/results_owner.py); the starter removes it with
    the copies it made.
    """
    head, sep, name = results_path.rpartition("/")
    return f"{head}{sep}.{name}.written-by"


def _beside(location: str, kind: str) -> str:
    stem = location[: -len(".jsonl")] if location.endswith(".jsonl") else location
    return f"{stem}.{kind}.jsonl"


class JobPhase(StrEnum):
    VALIDATING_INPUT = "validating_input"
    UPLOADING = "uploading"
    CREATING_BATCH = "creating_batch"
    WAITING = "waiting"
    CANCELLING = "cancelling"
    DOWNLOADING = "downloading"
    DONE = "done"


class JobStatus(StrEnum):
    """How the job ended, as a user reads it: never a bare success when requests failed."""

    SUCCEEDED = "succeeded"
    COMPLETED_WITH_FAILURES = "completed_with_failures"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    DEADLINE_EXCEEDED = "deadline_exceeded"


class RequestTally(_Contract):
    """Per-request outcome: every input custom_id is counted exactly once."""

    total: int = 0
    succeeded: int = 0
    failed: int = 0
    not_run: int = 0
    failures_by_code: dict[str, int] = Field(default_factory=dict)


class ModelTokens(_Contract):
    """Tokens of the successful responses that name one model."""

    prompt_tokens: int = 0
    completion_tokens: int = 0


class TokenTotals(_Contract):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    by_model: dict[str, ModelTokens] | None = Field(
        default=None,
        description="By the model each response names ('unknown' when none); absent from "
        "workers that did not count them.",
    )


class BatchCounts(_Contract):
    """The gateway's own request_counts, as last seen."""

    total: int = 0
    completed: int = 0
    failed: int = 0


class JobProgress(_Contract):
    """What a query (and the starter's progress bar) shows while the job runs."""

    phase: JobPhase = JobPhase.VALIDATING_INPUT
    batch_id: str | None = None
    batch_status: BatchStatus | None = None
    requests: int | None = None
    counts: BatchCounts | None = None
    reason: str | None = None
    updated_at: datetime | None = None
    phase_since: datetime | None = Field(
        default=None, description="When the batch entered its status (the gateway's clock)."
    )
    deadline: datetime | None = Field(
        default=None, description="When the job cancels a batch still in this status."
    )
    gateway_error: str | None = Field(
        default=None, description="The gateway's last error while the job keeps retrying."
    )


class GatewayFiles(_Contract):
    """What became of the job's files at the gateway once its batch had ended."""

    deleted: list[str] = Field(default_factory=list, description="File ids deleted.")
    left: dict[str, str] = Field(
        default_factory=dict,
        description="File id -> why it is still at the gateway (kept on request, an attached "
        "batch's, a batch that had not ended, or the gateway refused or failed the delete).",
    )


class BatchJobResult(_Contract):
    # batch_status holds a BatchStatus value but is typed str: the published schema
    # (schemas/batch_job_result.schema.json) that other languages build on says string.
    status: JobStatus
    reason: str | None = None
    batch_id: str
    batch_status: str
    input_file_id: str
    output_file_id: str | None = None
    error_file_id: str | None = None
    output_path: str
    errors_path: str
    requests: RequestTally
    batch_counts: BatchCounts | None = None
    usage: TokenTotals = Field(default_factory=TokenTotals)
    started_at: datetime
    batch_created_at: datetime | None = None
    finished_at: datetime
    gateway_files: GatewayFiles | None = Field(
        default=None,
        description="The files deleted at the gateway and those left there, with why; "
        "None for a job that had no file to look after, or started before this existed.",
    )


class FanOutProgress(_Contract):
    """What the example parent carries when it continues as new."""

    next_job: int = 0
    results: dict[int, BatchJobResult] = Field(default_factory=dict)
    failed_jobs: dict[str, str] = Field(default_factory=dict)


class FanOutInput(_Input):
    """An example parent: several inputs, one child BatchJobWorkflow each."""

    # Only ever decoded at the parent's start: refused there, like a child's typo.
    model_config = ConfigDict(extra="forbid")

    jobs: list[BatchJobInput] = Field(min_length=1)
    max_concurrent: int = Field(default=4, ge=1, description="Children in flight at once.")
    children_per_run: int = Field(
        default=500, ge=1, description="Children a run starts before it continues as new."
    )
    carried: FanOutProgress | None = Field(
        default=None, description="Set by the parent itself when it continues as new."
    )

    @field_validator("jobs", mode="before")
    @classmethod
    def _strict_jobs(cls, value: object) -> object:
        if not isinstance(value, list):
            return value
        return [BatchJobInput.parse(job) if isinstance(job, dict) else job for job in value]

    @model_validator(mode="after")
    def _own_results(self) -> FanOutInput:
        seen: set[str] = set()
        for job in self.jobs:
            for path in (job.resolved_output_path, job.resolved_errors_path):
                if "{workflow_id}" in path:
                    continue  # each child fills in its own id
                if path in seen:
                    raise ValueError(f"two jobs would write {path}: give each its own results")
                seen.add(path)
        return self


class FanOutResult(_Contract):
    results: list[BatchJobResult]
    failed_jobs: dict[str, str] = Field(
        default_factory=dict,
        description="Child workflow id (<parent>-job-<index>, one per job, so two jobs on the "
        "same input stay apart) -> why it failed",
    )
