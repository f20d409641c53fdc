"""Inputs and results of the sharded job (one job of any size) and of its activities.

Only locations, counts and settings cross this boundary: never shard
payloads, and never one entry per shard in the result.
"""

from __future__ import annotations

import base64
import zlib
from collections.abc import Iterable
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SerializerFunctionWrapHandler,
    model_serializer,
)

from contracts.job import (
    WORKFLOW_ID_PLACEHOLDER,
    BatchJobInput,
    JobStatus,
    TokenTotals,
    expand_workflow_id,
)

Order = Literal["input", "gateway"]

LEFT_EXAMPLES = 5
"""Files left at the gateway that a sharded job's result names; the rest are counted."""
FAILED_EXAMPLES = 5
"""Failed shards of a round whose cause the state keeps; the others are named by their child."""
MAX_FAILURE_TEXT = 500
"""Characters of a failed shard's cause kept in the state."""


def encode_shards(indexes: Iterable[int]) -> str:
    """Shard indexes as a compressed bitmap: a bit a shard before compression, and a
    run of alike shards (all failed, none failed) compresses to a few bytes."""
    found = sorted(indexes)
    if not found:
        return ""
    bitmap = bytearray(found[-1] // 8 + 1)
    for index in found:
        bitmap[index // 8] |= 1 << (index % 8)
    return base64.b64encode(zlib.compress(bytes(bitmap), 9)).decode()


def decode_shards(text: str) -> set[int]:
    if not text:
        return set()
    bitmap = zlib.decompress(base64.b64decode(text))
    return {
        byte_at * 8 + bit
        for byte_at, byte in enumerate(bitmap)
        if byte
        for bit in range(8)
        if byte & (1 << bit)
    }


class _Contract(BaseModel):
    """Decoding ignores fields this code does not know: a newer worker's, mid-deploy.

    A parent's progress crosses continue-as-new and its result is read by
    starters that may run older code than the worker that wrote them, as for
    contracts.job; fields are only ever added, never removed or retyped.
    """

    model_config = ConfigDict(extra="ignore")


class ShardingOptions(_Contract):
    """How the input is cut into batches and how many of them run at once."""

    max_batch_requests: int | None = Field(
        default=None, ge=1, description="Requests per shard; default the gateway dialect's limit."
    )
    max_batch_bytes: int | None = Field(
        default=None,
        ge=1,
        description="Bytes per shard file; default the dialect's (set it below Kong's "
        "max_request_body_size).",
    )
    max_concurrent_batches: int = Field(default=4, ge=1)
    max_enqueued_tokens: int | None = Field(
        default=None,
        ge=1,
        description="Estimated input tokens of the shards in flight at most (the quota).",
    )
    resubmit: int = Field(default=1, ge=0, description="Rounds for transient failures.")
    order: Order = "input"
    quota_retry: timedelta = Field(
        default=timedelta(minutes=1),
        description="First wait after a create refused for quota with nothing else in flight; "
        "doubles up to quota_retry_max.",
    )
    quota_retry_max: timedelta = timedelta(minutes=15)
    children_per_run: int = Field(
        default=500,
        ge=1,
        description="Children a run starts before it continues as new (history stays bounded).",
    )


class RoundState(_Contract):
    """One round of shards: the input's, or a follow-up of transient failures.

    Carried across continue-as-new and sent to the merge, so its size must not grow
    with the shards: which shards failed or were cancelled at a deadline is kept as
    compressed bitmaps, with the cause of the first few failures only. The lists of a
    state carried from a run before the bitmaps are still read.
    """

    shards: int = Field(description="How many shards the split wrote.")
    requests: int
    next_shard: int = Field(default=0, description="Shards below this one have been started.")
    deadline_cancelled: list[int] = Field(
        default_factory=list,
        description="Shards the job cancelled at a phase deadline (runs before the bitmaps).",
    )
    failed: dict[int, str] = Field(
        default_factory=dict,
        description=f"Shard -> why its child failed (results not written): the first "
        f"{FAILED_EXAMPLES}, and every one of a run before the bitmaps.",
    )
    unrun: list[int] = Field(
        default_factory=list,
        description="Shards started but cancelled before their child ran (at most those "
        "in flight at the cancel).",
    )
    retry: list[int] = Field(
        default_factory=list,
        description="Shards refused for quota, waiting to start again (at most those in flight).",
    )
    failed_bitmap: str = Field(default="", description="Every failed shard (encode_shards).")
    deadline_bitmap: str = Field(
        default="", description="Every shard cancelled at a deadline (encode_shards)."
    )
    running_bitmap: str = Field(
        default="",
        description="Every shard whose child ended while its batch had not (a child from "
        "before wait-out-uncancelled-v1): its requests may still run, so none is resubmitted.",
    )

    _failed: set[int] | None = PrivateAttr(default=None)
    _deadline: set[int] | None = PrivateAttr(default=None)
    _running: set[int] | None = PrivateAttr(default=None)

    def failed_shards(self) -> set[int]:
        if self._failed is None:
            self._failed = decode_shards(self.failed_bitmap) | set(self.failed)
        return self._failed

    def deadline_shards(self) -> set[int]:
        if self._deadline is None:
            self._deadline = decode_shards(self.deadline_bitmap) | set(self.deadline_cancelled)
        return self._deadline

    def running_shards(self) -> set[int]:
        if self._running is None:
            self._running = decode_shards(self.running_bitmap)
        return self._running

    def ended_running(self, index: int) -> None:
        self.running_shards().add(index)

    def shard_failed(self, index: int, why: str) -> None:
        self.failed_shards().add(index)
        if len(self.failed) < FAILED_EXAMPLES:
            self.failed[index] = why[:MAX_FAILURE_TEXT]

    def cancelled_at_deadline(self, index: int) -> None:
        self.deadline_shards().add(index)

    def failure_of(self, index: int) -> str | None:
        """Why the shard's child failed; None if it did not."""
        if index not in self.failed_shards():
            return None
        return self.failed.get(
            index,
            "its child workflow failed: its history says why (the job's result names "
            "the first failures)",
        )

    @model_serializer(mode="wrap")
    def _with_bitmaps(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        if self._failed is not None:
            data["failed_bitmap"] = encode_shards(self._failed)
        if self._deadline is not None:
            data["deadline_bitmap"] = encode_shards(self._deadline)
        if self._running is not None:
            data["running_bitmap"] = encode_shards(self._running)
        return data


class ShardGatewayFiles(_Contract):
    """What the shards' children did with their files at the gateway, in counts."""

    deleted: int = Field(default=0, description="Files the children deleted.")
    left: int = Field(default=0, description="Files the children left at the gateway.")
    left_examples: dict[str, str] = Field(
        default_factory=dict,
        description=f"Up to {LEFT_EXAMPLES} of the files left, file id -> why.",
    )


class ShardedProgress(_Contract):
    """What the parent carries across continue-as-new, and answers the `shards` query with."""

    round: int = 0
    rounds: list[RoundState] = Field(default_factory=list)
    shards_done: int = 0
    in_flight: int = 0
    requests: int = 0
    succeeded: int = 0
    failed: int = 0
    usage: TokenTotals = Field(default_factory=TokenTotals)
    quota_refusals: int = 0
    resubmitted: int = 0
    cancelled: bool = False
    started_at: datetime | None = None
    runs: int = Field(default=1, description="Runs of the parent so far (continue-as-new).")
    work_dir: str | None = Field(
        default=None,
        description="The shard folder the first run chose (None: a run from before it was kept).",
    )
    gateway_files: ShardGatewayFiles = Field(default_factory=ShardGatewayFiles)


class ShardedJobInput(_Contract):
    job: BatchJobInput = Field(description="The whole input and the settings every shard shares.")
    sharding: ShardingOptions = Field(default_factory=ShardingOptions)
    prices_path: str | None = Field(
        default=None, description="A price file over the committed table (shards/prices.json)."
    )
    carried: ShardedProgress | None = Field(
        default=None, description="Set by the job itself when it continues as new."
    )


class ModelCostLine(_Contract):
    model: str
    priced_as: str | None
    input_tokens: int
    output_tokens: int
    cost: float | None


class JobCost(_Contract):
    currency: str
    prices_as_of: str
    total: float
    by_model: list[ModelCostLine] = Field(default_factory=list)
    unpriced_models: list[str] = Field(default_factory=list)


class ShardedJobResult(_Contract):
    status: JobStatus
    reason: str | None = None
    output_path: str
    errors_path: str
    work_dir: str = Field(description="Where the shards' own files are (kept for inspection).")
    requests: int
    succeeded: int
    failed: int
    shards: int
    rounds: int
    resubmitted: int = 0
    recovered: int = 0
    quota_refusals: int = 0
    failed_shards: int = 0
    usage: TokenTotals = Field(default_factory=TokenTotals)
    cost: JobCost | None = None
    gateway_files: ShardGatewayFiles | None = Field(
        default=None, description="The shards' files deleted at the gateway and left there."
    )
    started_at: datetime
    finished_at: datetime


# -- the activities' requests and answers ----------------------------------------------


class SplitInputRequest(_Contract):
    refuse_results_at: list[str] = Field(
        default_factory=list,
        description="Round 0: the job's results locations, refused when results another job "
        "wrote are there (create-only); empty when the job replaces them, for later rounds "
        "and from jobs started before this.",
    )
    input_path: str
    round_dir: str = Field(description="Folder location the shards and shards.json go to.")
    max_batch_requests: int | None = None
    max_batch_bytes: int | None = None
    count_tokens: bool = False
    endpoint: str | None = Field(
        default=None,
        description="The job's endpoint: the whole input is checked against it (every line, "
        "custom_ids unique across every shard) before any shard is written. None: no check "
        "(a resubmission round's lines were checked in round 0).",
    )


class SplitSummary(_Contract):
    requests: int
    bytes: int
    shards: int
    estimated_input_tokens: int


class ShardTokensRequest(_Contract):
    round_dir: str
    start: int
    count: int


class SelectResubmissionsRequest(_Contract):
    previous_round_dir: str
    previous: RoundState
    out_path: str


class ResubmissionSummary(_Contract):
    requests: int
    transient_by_code: dict[str, int] = Field(default_factory=dict)
    permanent: int = 0


class MergeShardsRequest(_Contract):
    work_dir: str
    rounds: list[RoundState]
    output_path: str
    errors_path: str
    order: Order = "input"
    not_run_code: str = Field(description="Error code of requests whose shard never ran.")
    prices_path: str | None = None
    usage: TokenTotals | None = Field(
        default=None,
        description="The children's usage, when every one counted it by model: the merge "
        "then prices it instead of reading every result line again.",
    )


class RemoveShardFilesRequest(_Contract):
    work_dir: str = Field(description="The job's shard folder in an object store.")


class MergeSummary(_Contract):
    requests: int
    succeeded: int
    failed: int
    resubmitted: int
    recovered: int
    usage: TokenTotals
    cost: JobCost


class ShardPhase(StrEnum):
    SPLITTING = "splitting"
    RUNNING = "running"
    MERGING = "merging"
    DONE = "done"


def round_dir(work_dir: str, number: int) -> str:
    return f"{work_dir}/round-{number}"


def shard_input(round_location: str, index: int) -> str:
    return f"{round_location}/shard-{index:05d}.jsonl"


def shard_results(round_location: str, index: int) -> str:
    return f"{round_location}/shard-{index:05d}.results.jsonl"


def shard_errors(round_location: str, index: int) -> str:
    return f"{round_location}/shard-{index:05d}.errors.jsonl"


def resubmit_input(round_location: str) -> str:
    return f"{round_location}/resubmit.jsonl"


def work_dir_for(output_path: str, workflow_id: str) -> str:
    """The job's shard folder: beside its results file, or on the data directory when they
    are in an object store (jobs started before shard files could live in a store)."""
    if "://" in output_path and not output_path.startswith("file://"):
        return expand_workflow_id(f".shards/{WORKFLOW_ID_PLACEHOLDER}", workflow_id)
    stem = output_path[: -len(".jsonl")] if output_path.endswith(".jsonl") else output_path
    return f"{stem}.shards"


def store_work_dir(output_path: str, workflow_id: str) -> str | None:
    """The shard folder in the object store of the results: ``<folder>/.shards/<workflow id>``.

    None for results on the data directory (their folder is work_dir_for's).
    """
    if "://" not in output_path or output_path.startswith("file://"):
        return None
    return f"{output_path.rsplit('/', 1)[0]}/.shards/{workflow_id}"
