"""A sharded job whose own step fails for good, while shards run: they are let finish;
and a mid-deploy child that gave up on a batch still running: nothing of it is sent again."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio import activity
from temporalio.client import WorkflowFailureError, WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.sharding import ShardingActivities
from contracts.job import BatchJobInput, PhaseDeadlines
from contracts.names import (
    ACTIVITY_SHARD_TOKENS,
    FAILURE_PERMISSION_DENIED,
    PATCH_WAIT_OUT_UNCANCELLED,
)
from contracts.sharding import ShardedJobInput, ShardingOptions, ShardTokensRequest
from storage import LocalStorage, Stores
from tests.workflows.shard_gateway import ShardGateway, error_codes, read_ids, write_input
from workflows.batch_job import BatchJobWorkflow
from workflows.sharded_job import ShardedBatchJobWorkflow


async def run_until_a_token_read_is_denied(
    env: WorkflowEnvironment, root: Path
) -> tuple[ShardGateway, WorkflowFailureError, WorkflowHandle[Any, Any]]:
    """6 shards of 2, 4 at a time; the token read for the third shard is denied for good
    (a storage permission error), once the first two shards' children are running."""
    write_input(root / "in.jsonl", 12)
    gateway = ShardGateway(root)
    reads = 0

    @activity.defn(name=ACTIVITY_SHARD_TOKENS)
    async def shard_tokens(request: ShardTokensRequest) -> list[int]:
        nonlocal reads
        reads += 1
        if reads > 1:
            raise ApplicationError(
                f"{request.round_dir}: permission denied",
                type=FAILURE_PERMISSION_DENIED,
                non_retryable=True,
            )
        return [10, 10]  # two shards' worth: the third needs another read

    sharding = ShardingActivities(Stores(LocalStorage(root)), "openai")
    others = [fn for fn in sharding.all() if fn.__name__ != "shard_tokens"]
    queue = f"test-{uuid.uuid4()}"
    request = ShardedJobInput(
        job=BatchJobInput(input_path="in.jsonl", poll_interval=timedelta(seconds=30)),
        sharding=ShardingOptions(
            max_batch_requests=2, max_concurrent_batches=4, max_enqueued_tokens=1000
        ),
    )
    async with Worker(
        env.client,
        task_queue=queue,
        workflows=[BatchJobWorkflow, ShardedBatchJobWorkflow],
        activities=[*gateway.activities(), *others, shard_tokens],
    ):
        handle = await env.client.start_workflow(
            ShardedBatchJobWorkflow.run, request, id=f"job-{uuid.uuid4().hex[:8]}", task_queue=queue
        )
        with pytest.raises(WorkflowFailureError) as failure:
            await handle.result()
    return gateway, failure.value, handle


async def test_a_parent_step_that_fails_lets_the_shards_in_flight_finish_and_names_them(
    time_skipping_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    gateway, failure, _ = await run_until_a_token_read_is_denied(time_skipping_env, tmp_path)

    assert isinstance(failure.cause, ApplicationError)
    message = failure.cause.message
    assert "permission denied" in message
    assert "2 shard(s) in flight were let finish" in message
    assert "-shard-0" in message and "-shard-1" in message
    assert failure.cause.type == FAILURE_PERMISSION_DENIED
    # Both batches ran to the end and were collected; none was cancelled.
    assert [b.status for b in gateway.batches.values()] == ["completed", "completed"]
    assert not any(b.cancel_requested for b in gateway.batches.values())
    round_0 = tmp_path / "in.output.shards" / "round-0"
    assert read_ids(round_0 / "shard-00000.results.jsonl") == ["req-0000", "req-0001"]
    assert read_ids(round_0 / "shard-00001.results.jsonl") == ["req-0002", "req-0003"]


async def test_requests_of_a_child_that_gave_up_on_a_running_batch_are_not_sent_again(
    time_skipping_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    # Children from before wait-out-uncancelled-v1, mid-deploy: past the deadline, on
    # a gateway without a cancel route, they end while their batches run on.
    ids = write_input(tmp_path / "in.jsonl", 4)
    gateway = ShardGateway(tmp_path, hang=lambda key: True, cancel_unsupported=True)
    sharding = ShardingActivities(Stores(LocalStorage(tmp_path)), "openai")
    queue = f"test-{uuid.uuid4()}"
    job = BatchJobInput(
        input_path="in.jsonl",
        poll_interval=timedelta(seconds=30),
        deadlines=PhaseDeadlines(in_progress=timedelta(hours=1)),
    )
    request = ShardedJobInput(job=job, sharding=ShardingOptions(max_batch_requests=2, resubmit=2))
    async with Worker(
        time_skipping_env.client,
        task_queue=queue,
        workflows=[BatchJobWorkflow, ShardedBatchJobWorkflow],
        activities=[*gateway.activities(), *sharding.all()],
        patch_activation_callback=lambda patch: patch.patch_id != PATCH_WAIT_OUT_UNCANCELLED,
    ):
        handle = await time_skipping_env.client.start_workflow(
            ShardedBatchJobWorkflow.run, request, id=f"job-{uuid.uuid4().hex[:8]}", task_queue=queue
        )
        result = await handle.result()

    assert len(gateway.batches) == 2, "no request was sent again"
    assert all(b.status == "in_progress" for b in gateway.batches.values())
    assert (result.resubmitted, result.rounds) == (0, 1)
    assert error_codes(tmp_path / "in.errors.jsonl") == dict.fromkeys(ids, "deadline_exceeded")
