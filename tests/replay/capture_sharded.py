"""The sharded parent's histories for the replay test: python -m tests.replay.capture_sharded

    python -m tests.replay.capture_sharded          # the scenarios not captured yet
    python -m tests.replay.capture_sharded NAME...  # these, even if captured (overwrites)

sharded: one job with a quota refusal, a permanent and a transient failure,
and a resubmission round, on the time-skipping server with real shard files.
sharded_in_store: the same job with its files in S3 (moto's server), its shard
files beside the results there (patch shards-in-store-v1) and removed after
the merge.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from contracts.sharding import ShardedJobInput
from devstack.storage_servers import MotoServer
from devstack.temporal import start_time_skipping
from storage import ObjectStorage
from tests.workflows.shard_gateway import ShardGateway, write_input
from tests.workflows.test_sharded_job import sharded

HISTORIES = Path(__file__).parent / "histories"
BUCKET = "replay"


def rule(custom_id: str, sent: int) -> tuple[int, str] | None:
    if custom_id == "req-0001" and sent == 0:
        return 429, "rate_limit_exceeded"
    if custom_id == "req-0004":
        return 400, "invalid_request_error"
    return None


async def _run(
    env: WorkflowEnvironment, root: Path, request: ShardedJobInput
) -> WorkflowHandle[Any, Any]:
    gateway = ShardGateway(root, rule=rule, quota_refusals=1)
    async with gateway.serving(env) as start:
        handle = await start(request)
        await handle.result()
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


SCENARIOS: dict[str, Callable[[WorkflowEnvironment, Path], Awaitable[WorkflowHandle[Any, Any]]]] = {
    "sharded": _local,
    "sharded_in_store": _in_store,
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
