"""The sharded job past its deadlines, on real processes: nothing is paid for twice."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import httpx
import pytest

from contracts.job import PhaseDeadlines
from contracts.names import SHARDED_JOB_WORKFLOW_NAME
from contracts.sharding import ShardedJobInput, ShardedJobResult, ShardingOptions
from tests.e2e.conftest import Stack
from tests.e2e.helpers import fast_job, ids_in

pytestmark = pytest.mark.e2e

REQUESTS, PER_SHARD = 40, 10


def batches_at_the_gateway(stack: Stack) -> list[dict[str, object]]:
    with httpx.Client(base_url=stack.emulator.base_url, timeout=30) as http:
        batches: list[dict[str, object]] = http.get("/batches", params={"limit": 100}).json()[
            "data"
        ]
    return batches


async def test_shards_past_a_deadline_the_gateway_cannot_cancel_are_collected_not_paid_twice(
    stack: Stack,
) -> None:
    stack.write_input("in.jsonl", REQUESTS)
    # Kong without the cancel route; each batch runs ~5 s in progress, past a 1 s deadline.
    stack.emulator.set_knobs(
        unsupported_routes=["cancel_batch"], line_latency_seconds=0.5, batch_concurrency=1
    )
    request = ShardedJobInput(
        job=fast_job(deadlines=PhaseDeadlines(in_progress=timedelta(seconds=1))),
        sharding=ShardingOptions(
            max_batch_requests=PER_SHARD, max_concurrent_batches=4, resubmit=2
        ),
    )
    with stack.worker():
        handle = await stack.client.start_workflow(
            SHARDED_JOB_WORKFLOW_NAME,
            request,
            id=f"e2e-sharded-deadline-{uuid.uuid4().hex[:8]}",
            task_queue=stack.task_queue,
            result_type=ShardedJobResult,
        )
        result = await asyncio.wait_for(handle.result(), 180)

    # Every request ran once, in the batch first made for it, and its result is kept.
    assert stack.emulator.stats()["lines_executed"] == REQUESTS
    batches = batches_at_the_gateway(stack)
    assert len(batches) == REQUESTS // PER_SHARD, "no shard was resubmitted"
    assert {b["status"] for b in batches} == {"completed"}
    assert result.succeeded == REQUESTS, result.reason
    assert result.failed == 0 and result.resubmitted == 0 and result.rounds == 1
    assert ids_in(stack.data_dir / result.output_path) == [f"req-{i}" for i in range(REQUESTS)]
    assert ids_in(stack.data_dir / result.errors_path) == []
    assert stack.emulator.stats()["api_calls"]["POST /batches/{id}/cancel"] == len(batches)
