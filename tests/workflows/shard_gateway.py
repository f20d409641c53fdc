"""A scripted gateway that runs each shard's batch over its real input file.

Stands in for BatchActivities (same activity names) so the sharded job runs
on the time-skipping server with real files: each request's outcome comes
from a rule on its custom_id and how often it was sent, and collect writes
the shard's results and errors files the way the real activity does.
"""

from __future__ import annotations

import json
import tempfile
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from temporalio import activity
from temporalio.client import WorkflowHandle
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.sharding import ShardingActivities
from contracts.job import BatchCounts, GatewayFiles, RequestTally, TokenTotals
from contracts.names import (
    ACTIVITY_SUBMIT_BATCH,
    ACTIVITY_VALIDATE_AND_UPLOAD,
    ACTIVITY_WATCH_BATCH,
    FAILURE_BATCH_NOT_CHANGED,
)
from contracts.sharding import ShardedJobInput, ShardedJobResult
from contracts.steps import (
    AwaitChangeRequest,
    BatchSnapshot,
    BatchWatch,
    CancelBatchRequest,
    CleanUpRequest,
    CollectedResults,
    CollectResultsRequest,
    CreateBatchRequest,
    InputSummary,
    SubmitBatchRequest,
    SubmittedBatch,
    UploadedInput,
    UploadInputRequest,
    ValidateAndUploadRequest,
    ValidatedUpload,
    ValidateInputRequest,
    WatchBatchRequest,
)
from devstack.scripted import submit_by_parts, validate_and_upload_by_parts
from storage import LocalStorage, ObjectStorage, Stores

# (custom_id, times sent before) -> None for a success, else (status code, error code).
Rule = Callable[[str, int], tuple[int, str] | None]
MODEL = "gpt-4o-mini"
PROMPT_TOKENS, COMPLETION_TOKENS = 10, 20


def all_succeed(custom_id: str, sent: int) -> tuple[int, str] | None:
    return None


def write_input(path: Path, count: int, *, pad: int = 0) -> list[str]:
    ids = [f"req-{n:04d}" for n in range(count)]
    with path.open("w") as out:
        for custom_id in ids:
            body = {"model": MODEL, "messages": [{"role": "user", "content": "hi" + "x" * pad}]}
            line = {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions"}
            out.write(json.dumps({**line, "body": body}) + "\n")
    return ids


@dataclass
class _Batch:
    id: str
    input_path: str
    status: str = "validating"
    cancel_requested: bool = False


@dataclass
class ShardGateway:
    root: Path
    rule: Rule = all_succeed
    hang: Callable[[str], bool] = lambda input_path: False
    """Batches of these shard inputs stay in_progress until cancelled."""
    quota_refusals: int = 0
    cancel_unsupported: bool = False
    """No cancel route (Kong may expose none): a cancel leaves the batch as it is."""
    upload_refusal: tuple[str, str] | None = None
    """(part of the job key, message): that upload fails for good, as a 413 does."""
    """The first creates, this many, answer a batch already failed for the token quota."""
    sent: Counter[str] = field(default_factory=Counter)
    batches: dict[str, _Batch] = field(default_factory=dict)
    running: int = 0
    most_running: int = 0
    creates: int = 0
    deleted: list[str] = field(default_factory=list)
    """File ids the children's clean-up deleted."""

    def _path(self, location: str) -> Path:
        return self.root / location

    def _snapshot(self, batch: _Batch, errors: list[str] | None = None) -> BatchSnapshot:
        ended = batch.status in ("completed", "cancelled", "failed")
        return BatchSnapshot(
            id=batch.id,
            status=batch.status,
            input_file_id=f"file-{batch.id}",
            output_file_id="out" if ended and batch.status != "failed" else None,
            counts=BatchCounts(),
            errors=errors or [],
        )

    def activities(self) -> list[Callable[..., Any]]:
        gateway = self

        @activity.defn(name="validate_input")
        async def validate_input(request: ValidateInputRequest) -> InputSummary:
            data = await gateway._read(request.input_path)
            return InputSummary(
                requests=data.count(b"\n"), bytes=len(data), model=MODEL, sha256="0" * 64
            )

        @activity.defn(name="upload_input")
        async def upload_input(request: UploadInputRequest) -> UploadedInput:
            refusal = gateway.upload_refusal
            if refusal is not None and refusal[0] in request.job_key:
                raise ApplicationError(
                    refusal[1], type="RejectedByGatewayError", non_retryable=True
                )
            return UploadedInput(
                file_id=request.job_key, bytes=request.bytes, adopted=False, ready=True
            )

        @activity.defn(name=ACTIVITY_VALIDATE_AND_UPLOAD)
        async def validate_and_upload(request: ValidateAndUploadRequest) -> ValidatedUpload:
            return await validate_and_upload_by_parts(request, validate_input, upload_input)

        @activity.defn(name="create_batch")
        async def create_batch(request: CreateBatchRequest) -> BatchSnapshot:
            gateway.creates += 1
            # The upload's file id is the job key, "<shard workflow id>/<run id>".
            batch = _Batch(id=f"batch-{uuid.uuid4().hex[:8]}", input_path=request.input_file_id)
            if gateway.quota_refusals:
                gateway.quota_refusals -= 1
                batch.status = "failed"
                return gateway._snapshot(
                    batch, ["[token_limit_exceeded] Enqueued token limit reached for gpt-4o-mini"]
                )
            gateway.batches[batch.id] = batch
            gateway.running += 1
            gateway.most_running = max(gateway.most_running, gateway.running)
            return gateway._snapshot(batch)

        @activity.defn(name=ACTIVITY_SUBMIT_BATCH)
        async def submit_batch(request: SubmitBatchRequest) -> SubmittedBatch:
            return await submit_by_parts(request, validate_and_upload, create_batch)

        @activity.defn(name="await_status_change")
        async def await_status_change(request: AwaitChangeRequest) -> BatchSnapshot:
            batch = gateway.batches[request.batch_id]
            stays = batch.status == "in_progress" and gateway.hang(batch.input_path)
            if (stays and not batch.cancel_requested) or activity.info().attempt == 1:
                raise ApplicationError(
                    f"batch still {batch.status}",
                    type=FAILURE_BATCH_NOT_CHANGED,
                    next_retry_delay=timedelta(seconds=request.poll_seconds),
                    category=ApplicationErrorCategory.BENIGN,
                )
            batch.status = (
                "cancelled"
                if batch.cancel_requested
                else {"validating": "in_progress"}.get(batch.status, "completed")
            )
            if batch.status in ("cancelled", "completed"):
                gateway.running -= 1
            return gateway._snapshot(batch)

        @activity.defn(name=ACTIVITY_WATCH_BATCH)
        async def watch_batch(request: WatchBatchRequest) -> BatchWatch:
            # Like the retry-as-poll fake: the server's clock stands still while an
            # activity waits, so an unchanged batch ends the attempt with a retry delay.
            known = AwaitChangeRequest(
                batch_id=request.batch.id,
                known_status=request.batch.status,
                poll_seconds=request.poll_seconds,
            )
            try:
                return BatchWatch(batch=await await_status_change(known))
            except ApplicationError:
                if activity.info().current_attempt_scheduled_time >= request.return_by:
                    return BatchWatch(batch=request.batch)  # its time is up: no news
                raise

        @activity.defn(name="collect_results")
        async def collect_results(request: CollectResultsRequest) -> CollectedResults:
            if "://" not in request.input_path:
                return gateway._collect(request)
            return await gateway._collect_in_store(request)

        @activity.defn(name="clean_up")
        async def clean_up(request: CleanUpRequest) -> GatewayFiles:
            gateway.deleted.extend(request.gateway_file_ids)
            return GatewayFiles(deleted=request.gateway_file_ids)

        @activity.defn(name="cancel_batch")
        async def cancel_batch(request: CancelBatchRequest) -> BatchSnapshot | None:
            if request.batch_id is None:
                return None
            batch = gateway.batches[request.batch_id]
            if gateway.cancel_unsupported:
                return gateway._snapshot(batch)
            batch.cancel_requested = True
            if batch.status != "completed":
                batch.status = "cancelling"
            return gateway._snapshot(batch)

        return [
            validate_input,
            upload_input,
            create_batch,
            await_status_change,
            watch_batch,
            collect_results,
            cancel_batch,
            validate_and_upload,
            clean_up,
            submit_batch,
        ]

    async def _read(self, location: str) -> bytes:
        if "://" not in location:
            return self._path(location).read_bytes()
        return b"".join([chunk async for chunk in ObjectStorage().read_chunks(location)])

    async def _collect_in_store(self, request: CollectResultsRequest) -> CollectedResults:
        """A shard whose files are in an object store: collected on a local copy, then put."""
        store = ObjectStorage()
        with tempfile.TemporaryDirectory() as scratch:
            local = Path(scratch)
            (local / "in.jsonl").write_bytes(await self._read(request.input_path))
            collected = self._collect(
                request.model_copy(
                    update={
                        "input_path": str(local / "in.jsonl"),
                        "output_path": str(local / "results.jsonl"),
                        "errors_path": str(local / "errors.jsonl"),
                    }
                )
            )
            for name, location in (
                ("results.jsonl", request.output_path),
                ("errors.jsonl", request.errors_path),
            ):
                await store.put_file(location, local / name)
        return collected

    def _collect(self, request: CollectResultsRequest) -> CollectedResults:
        ran = request.batch.status == "completed"
        tally: Counter[str] = Counter()
        failures: Counter[str] = Counter()
        results = self._path(request.output_path).open("w")
        errors = self._path(request.errors_path).open("w")
        with results, errors, self._path(request.input_path).open() as lines:
            for raw in lines:
                custom_id = json.loads(raw)["custom_id"]
                tally["total"] += 1
                if not ran:
                    error = {"code": request.not_run_code, "message": "not run"}
                    errors.write(json.dumps({"custom_id": custom_id, "error": error}) + "\n")
                    tally["not_run"] += 1
                    failures[request.not_run_code] += 1
                    continue
                outcome = self.rule(custom_id, self.sent[custom_id])
                self.sent[custom_id] += 1
                if outcome is None:
                    body = {
                        "model": f"{MODEL}-2024-07-18",
                        "usage": {
                            "prompt_tokens": PROMPT_TOKENS,
                            "completion_tokens": COMPLETION_TOKENS,
                        },
                    }
                    line = {"custom_id": custom_id, "response": {"status_code": 200, "body": body}}
                    results.write(json.dumps(line) + "\n")
                    tally["succeeded"] += 1
                else:
                    status, code = outcome
                    body = {"error": {"code": code, "message": "scripted"}}
                    line = {
                        "custom_id": custom_id,
                        "response": {"status_code": status, "body": body},
                    }
                    errors.write(json.dumps(line) + "\n")
                    tally["failed"] += 1
                    failures[code] += 1
        succeeded = tally["succeeded"]
        return CollectedResults(
            requests=RequestTally(
                total=tally["total"],
                succeeded=succeeded,
                failed=tally["failed"],
                not_run=tally["not_run"],
                failures_by_code=dict(failures),
            ),
            usage=TokenTotals(
                prompt_tokens=succeeded * PROMPT_TOKENS,
                completion_tokens=succeeded * COMPLETION_TOKENS,
                total_tokens=succeeded * (PROMPT_TOKENS + COMPLETION_TOKENS),
            ),
        )

    @asynccontextmanager
    async def serving(self, env: WorkflowEnvironment) -> AsyncIterator[Callable[..., Any]]:
        """A worker with the sharded job on these activities; yields a function starting one."""
        from workflows.batch_job import BatchJobWorkflow
        from workflows.sharded_job import ShardedBatchJobWorkflow

        sharding = ShardingActivities(Stores(LocalStorage(self.root)), "openai")
        queue = f"test-{uuid.uuid4()}"
        async with Worker(
            env.client,
            task_queue=queue,
            workflows=[BatchJobWorkflow, ShardedBatchJobWorkflow],
            activities=[*self.activities(), *sharding.all()],
        ):

            async def start(request: ShardedJobInput) -> WorkflowHandle[Any, ShardedJobResult]:
                return await env.client.start_workflow(
                    ShardedBatchJobWorkflow.run,
                    request,
                    id=f"job-{uuid.uuid4().hex[:8]}",
                    task_queue=queue,
                )

            yield start


def read_ids(path: Path) -> list[str]:
    return [json.loads(line)["custom_id"] for line in path.read_text().splitlines()]


def error_codes(path: Path) -> dict[str, str]:
    codes = {}
    for line in path.read_text().splitlines():
        parsed = json.loads(line)
        error = parsed.get("error") or parsed["response"]["body"]["error"]
        codes[parsed["custom_id"]] = error["code"]
    return codes
