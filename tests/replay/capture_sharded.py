"""The sharded parent's histories for the replay test: python -m tests.replay.capture_sharded

    python -m tests.replay.capture_sharded          # the scenarios not captured yet
    python -m tests.replay.capture_sharded NAME...  # these, even if captured (overwrites)

sharded: one job with a quota refusal, a permanent and a transient failure,
and a resubmission round, on the time-skipping server with real shard files.
sharded_in_store: the same job with its files in S3 (moto's server), its shard
files beside the results there (patch shards-in-store-v1) and removed after
the merge.
sharded_continued_as_new / sharded_carried_over: the first and the last run of a job
that continues as new every 2 children. sharded_cancelled: a cancel with two shards
running. sharded_quota_waited: a refusal with nothing else in flight (the parent's
timer). sharded_tokens_counted: admission within an enqueued-token budget.
sharded_failed_after_shards_finished: a step failing while shards run
(shards-outlive-parent-failure-v1). sharded_cancel_raced_start: a cancel racing three
children's starts (exact-shard-cancel-v1), held open by the test's interceptor, with
which the replay test replays it.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.sharding import ShardingActivities
from contracts.names import QUERY_SHARDS
from contracts.sharding import ShardedJobInput, ShardedProgress
from devstack.storage_servers import MotoServer
from devstack.temporal import start_time_skipping
from storage import LocalStorage, ObjectStorage, Stores
from tests.workflows.hold_child_starts import HoldChildStartsUntilCancel
from tests.workflows.shard_gateway import ShardGateway, write_input
from tests.workflows.test_sharded_job import sharded
from workflows.batch_job import BatchJobWorkflow
from workflows.sharded_job import ShardedBatchJobWorkflow

HISTORIES = Path(__file__).parent / "histories"
BUCKET = "replay"


def rule(custom_id: str, sent: int) -> tuple[int, str] | None:
    if custom_id == "req-0001" and sent == 0:
        return 429, "rate_limit_exceeded"
    if custom_id == "req-0004":
        return 400, "invalid_request_error"
    return None


async def _run(
    env: WorkflowEnvironment, root: Path, request: ShardedJobInput, **gateway_options: Any
) -> WorkflowHandle[Any, Any]:
    gateway = ShardGateway(root, **{"rule": rule, "quota_refusals": 1, **gateway_options})
    async with gateway.serving(env) as start:
        handle = await start(request)
        await handle.result()
    return handle


def _run_of(
    env: WorkflowEnvironment, handle: WorkflowHandle[Any, Any], run_id: str | None
) -> WorkflowHandle[Any, Any]:
    return env.client.get_workflow_handle(handle.id, run_id=run_id)


async def _continued_as_new(env: WorkflowEnvironment, root: Path) -> WorkflowHandle[Any, Any]:
    """The first run, which continues as new after 2 children carrying its state."""
    write_input(root / "in.jsonl", 9)
    request = sharded(max_batch_requests=2, max_concurrent_batches=2, children_per_run=2)
    handle = await _run(env, root, request, quota_refusals=0)
    return _run_of(env, handle, handle.first_execution_run_id)


async def _carried_over(env: WorkflowEnvironment, root: Path) -> WorkflowHandle[Any, Any]:
    """The last run of the same job: it starts from the state the run before it carried."""
    write_input(root / "in.jsonl", 9)
    request = sharded(max_batch_requests=2, max_concurrent_batches=2, children_per_run=2)
    handle = await _run(env, root, request, quota_refusals=0)
    return _run_of(env, handle, None)  # the latest run


async def _cancelled(env: WorkflowEnvironment, root: Path) -> WorkflowHandle[Any, Any]:
    """Two shards done, two running until cancelled: the cancel reaches both batches."""
    write_input(root / "in.jsonl", 8)
    gateway = ShardGateway(root, hang=lambda key: "-shard-2/" in key or "-shard-3/" in key)
    async with gateway.serving(env) as start:
        handle = await start(sharded(max_batch_requests=2, max_concurrent_batches=4))
        for _ in range(600):
            shards = await handle.query(QUERY_SHARDS, result_type=ShardedProgress)
            if shards.shards_done >= 2:
                break
            await asyncio.sleep(0.05)
        await handle.cancel()
        await handle.result()
    return handle


async def _quota_waited(env: WorkflowEnvironment, root: Path) -> WorkflowHandle[Any, Any]:
    """One shard at a time, its create refused for quota: the parent's timer, then again."""
    write_input(root / "in.jsonl", 4)
    request = sharded(max_batch_requests=2, max_concurrent_batches=1)
    return await _run(env, root, request, rule=lambda cid, sent: None)


async def _tokens_counted(env: WorkflowEnvironment, root: Path) -> WorkflowHandle[Any, Any]:
    """Admission within an enqueued-token budget: the shard_tokens step, one shard at a time."""
    write_input(root / "in.jsonl", 6)
    request = sharded(max_batch_requests=2, max_concurrent_batches=4, max_enqueued_tokens=1)
    return await _run(env, root, request, rule=lambda cid, sent: None, quota_refusals=0)


async def _failed_after_shards_finished(
    env: WorkflowEnvironment, root: Path
) -> WorkflowHandle[Any, Any]:
    """A parent step failing for good while shards run (shards-outlive-parent-failure-v1)."""
    from tests.workflows.test_sharded_parent_failure import run_until_a_token_read_is_denied

    _, _, handle = await run_until_a_token_read_is_denied(env, root)
    return handle


async def _local(env: WorkflowEnvironment, root: Path) -> WorkflowHandle[Any, Any]:
    write_input(root / "in.jsonl", 9)
    return await _run(env, root, sharded(max_batch_requests=2, max_concurrent_batches=2))


async def _in_store(env: WorkflowEnvironment, root: Path) -> WorkflowHandle[Any, Any]:
    with MotoServer(root / "moto") as moto:
        moto.create_bucket(BUCKET)
        for name, value in moto.env().items():
            os.environ[name] = value
        write_input(root / "in.jsonl", 9)
        await ObjectStorage().put_file(f"s3://{BUCKET}/in/day.jsonl", root / "in.jsonl")
        request = sharded(max_batch_requests=2, max_concurrent_batches=2)
        request.job = request.job.model_copy(
            update={
                "input_path": f"s3://{BUCKET}/in/day.jsonl",
                "output_path": f"s3://{BUCKET}/out/day.results.jsonl",
                "errors_path": f"s3://{BUCKET}/out/day.errors.jsonl",
            }
        )
        return await _run(env, root, request)


async def _cancel_raced_start(env: WorkflowEnvironment, root: Path) -> WorkflowHandle[Any, Any]:
    """A cancel landing while three children's starts are unconfirmed (exact-shard-cancel-v1);
    replayed with the interceptor that held the starts open."""
    write_input(root / "in.jsonl", 6)
    gateway = ShardGateway(root, hang=lambda key: True)
    sharding = ShardingActivities(Stores(LocalStorage(root)), "openai")
    queue = f"capture-{uuid.uuid4().hex[:8]}"
    async with Worker(
        env.client,
        task_queue=queue,
        workflows=[BatchJobWorkflow, ShardedBatchJobWorkflow],
        activities=[*gateway.activities(), *sharding.all()],
        interceptors=[HoldChildStartsUntilCancel()],
    ):
        handle = await env.client.start_workflow(
            ShardedBatchJobWorkflow.run,
            sharded(max_batch_requests=2, max_concurrent_batches=3),
            id=f"replay-{uuid.uuid4().hex[:8]}",
            task_queue=queue,
        )
        for _ in range(600):
            if len(gateway.batches) == 3:
                break
            await asyncio.sleep(0.05)
        await handle.cancel()
        await handle.result()
    return handle


SCENARIOS: dict[str, Callable[[WorkflowEnvironment, Path], Awaitable[WorkflowHandle[Any, Any]]]] = {
    "sharded": _local,
    "sharded_in_store": _in_store,
    "sharded_continued_as_new": _continued_as_new,
    "sharded_carried_over": _carried_over,
    "sharded_cancelled": _cancelled,
    "sharded_quota_waited": _quota_waited,
    "sharded_tokens_counted": _tokens_counted,
    "sharded_failed_after_shards_finished": _failed_after_shards_finished,
    "sharded_cancel_raced_start": _cancel_raced_start,
}


async def main(names: list[str]) -> None:
    wanted = names or [n for n in SCENARIOS if not (HISTORIES / f"{n}.json").exists()]
    if not wanted:
        print("every sharded scenario is captured")
        return
    env = await start_time_skipping()
    try:
        for name in wanted:
            with tempfile.TemporaryDirectory() as folder:
                handle = await SCENARIOS[name](env, Path(folder))
                history = await handle.fetch_history()
            record = {"workflow_id": handle.id, "history": json.loads(history.to_json())}
            (HISTORIES / f"{name}.json").write_text(json.dumps(record, indent=1) + "\n")
            print(f"{name}: {len(history.events)} events")
    finally:
        await env.shutdown()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
