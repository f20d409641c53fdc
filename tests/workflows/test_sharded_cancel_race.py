"""A cancel of the sharded job that lands while its children's starts are unconfirmed."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from pathlib import Path

from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.sharding import ShardingActivities
from contracts.job import BatchJobInput, JobStatus
from contracts.sharding import ShardedJobInput, ShardingOptions
from storage import LocalStorage, Stores
from tests.workflows.hold_child_starts import HoldChildStartsUntilCancel
from tests.workflows.shard_gateway import ShardGateway, error_codes, read_ids, write_input
from workflows.batch_job import BatchJobWorkflow
from workflows.sharded_job import ShardedBatchJobWorkflow


async def test_a_shard_whose_start_raced_the_cancel_is_cancelled_at_the_gateway(
    time_skipping_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    ids = write_input(tmp_path / "in.jsonl", 6)
    # Every batch runs until it is cancelled.
    gateway = ShardGateway(tmp_path, hang=lambda key: True)
    sharding = ShardingActivities(Stores(LocalStorage(tmp_path)), "openai")
    queue = f"test-{uuid.uuid4()}"
    request = ShardedJobInput(
        job=BatchJobInput(input_path="in.jsonl", poll_interval=timedelta(seconds=30)),
        sharding=ShardingOptions(max_batch_requests=2, max_concurrent_batches=3),
    )
    client = time_skipping_env.client
    async with Worker(
        client,
        task_queue=queue,
        workflows=[BatchJobWorkflow, ShardedBatchJobWorkflow],
        activities=[*gateway.activities(), *sharding.all()],
        interceptors=[HoldChildStartsUntilCancel()],
    ):
        handle = await client.start_workflow(
            ShardedBatchJobWorkflow.run, request, id=f"job-{uuid.uuid4().hex[:8]}", task_queue=queue
        )
        for _ in range(600):  # the three batches made, none known to the parent yet
            if len(gateway.batches) == 3:
                break
            await asyncio.sleep(0.05)
        assert len(gateway.batches) == 3
        await handle.cancel()
        result = await handle.result()
        statuses_at_the_end = [b.status for b in gateway.batches.values()]

    assert result.status is JobStatus.CANCELLED
    # Each child that began was cancelled, and its batch with it, before the job ended.
    assert statuses_at_the_end == ["cancelled"] * 3
    assert all(b.cancel_requested for b in gateway.batches.values())
    # Counted by what the gateway did: cancelled batches, nothing run, nothing lost.
    assert read_ids(tmp_path / "in.output.jsonl") == []
    assert error_codes(tmp_path / "in.errors.jsonl") == dict.fromkeys(ids, "batch_cancelled")
