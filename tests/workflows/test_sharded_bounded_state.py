"""A parent of 5,000 shards: what it carries across continue-as-new, and its result,
stay the same size whatever the number of shards (counts and a few examples)."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from datetime import timedelta
from pathlib import Path

from temporalio.api.enums.v1 import EventType
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.sharding import SHARD_FAILED_CODE, ShardingActivities
from contracts.job import BatchJobInput, JobStatus
from contracts.sharding import ShardedJobInput, ShardedJobResult, ShardingOptions
from storage import LocalStorage, Stores
from tests.workflows import scripted_shards
from tests.workflows.scripted_shards import ScriptedShard, outcome_of
from tests.workflows.shard_gateway import error_codes, read_ids, write_input
from workflows.sharded_job import ShardedBatchJobWorkflow

SHARDS = 5_000
BOUND = 8 * 1024
"""Bytes of a run's carried state and of the result at most, whatever the shards."""


async def test_a_parent_of_5000_shards_carries_a_bounded_state_through_continue_as_new(
    time_skipping_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    ids = write_input(tmp_path / "in.jsonl", SHARDS)
    scripted_shards.ROOT[:] = [tmp_path]
    sharding = ShardingActivities(Stores(LocalStorage(tmp_path)), "openai")
    queue = f"test-{uuid.uuid4()}"
    request = ShardedJobInput(
        job=BatchJobInput(input_path="in.jsonl", poll_interval=timedelta(seconds=30)),
        sharding=ShardingOptions(
            max_batch_requests=1, max_concurrent_batches=100, children_per_run=1000, resubmit=0
        ),
    )
    client = time_skipping_env.client
    async with Worker(
        client,
        task_queue=queue,
        workflows=[ScriptedShard, ShardedBatchJobWorkflow],
        activities=sharding.all(),
        max_concurrent_workflow_tasks=50,
    ):
        handle = await client.start_workflow(
            ShardedBatchJobWorkflow.run, request, id=f"job-{uuid.uuid4().hex[:8]}", task_queue=queue
        )
        result = await handle.result()

    # Every shard's requests are in exactly one file, each as its child ended.
    outcomes = Counter(outcome_of(n) for n in range(SHARDS))
    assert (result.shards, result.requests) == (SHARDS, SHARDS)
    assert result.succeeded == outcomes["succeeded"]
    assert result.failed_shards == outcomes["failed"]
    assert result.status is JobStatus.COMPLETED_WITH_FAILURES
    assert read_ids(tmp_path / "in.output.jsonl") == [
        i for n, i in enumerate(ids) if outcome_of(n) == "succeeded"
    ]
    codes = error_codes(tmp_path / "in.errors.jsonl")
    assert Counter(codes.values()) == {
        SHARD_FAILED_CODE: outcomes["failed"],
        "batch_cancelled": outcomes["deadline"],
    }

    # Several runs; what each carried to the next, and the result, stayed small.
    carried: list[int] = []
    run_id: str | None = handle.first_execution_run_id
    while run_id is not None:
        history = await client.get_workflow_handle(handle.id, run_id=run_id).fetch_history()
        last = history.events[-1]
        if last.event_type != EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW:
            completed = last.workflow_execution_completed_event_attributes
            [payload] = completed.result.payloads
            assert len(payload.data) < BOUND, len(payload.data)
            break
        attributes = last.workflow_execution_continued_as_new_event_attributes
        [payload] = attributes.input.payloads
        carried.append(len(payload.data))
        state = json.loads(payload.data)["carried"]
        assert all(len(r["failed"]) <= 5 for r in state["rounds"])
        run_id = attributes.new_execution_run_id
    assert len(carried) >= 4, carried
    assert max(carried) < BOUND, carried
    assert isinstance(result, ShardedJobResult)
