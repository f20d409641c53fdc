"""The sharded job on real processes: a gateway whose enqueued-token quota refuses creates."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from datetime import timedelta

import pytest

from contracts.job import JobStatus
from contracts.names import SHARDED_JOB_WORKFLOW_NAME
from contracts.sharding import ShardedJobInput, ShardedJobResult, ShardingOptions
from devstack.process import REPO_ROOT
from emulator.fake_model import prompt_tokens
from shards.cost import cost_of, load_prices, tally_usage
from tests.e2e.conftest import Stack
from tests.e2e.helpers import fast_job, ids_in

pytestmark = pytest.mark.e2e

REQUESTS, PER_SHARD = 12, 3


@pytest.mark.parametrize("refusal", ["failed_batch", "http_429"])
async def test_shards_refused_for_the_token_quota_wait_and_are_admitted_later(
    stack: Stack, refusal: str
) -> None:
    path = stack.write_input("in.jsonl", REQUESTS)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    biggest_shard = max(
        sum(prompt_tokens("/v1/chat/completions", line["body"]) for line in lines[i : i + 3])
        for i in range(0, REQUESTS, PER_SHARD)
    )
    # Room for one shard's batch at a time: the other three creates are refused.
    stack.emulator.set_knobs(
        enqueued_token_limit=biggest_shard + biggest_shard // 2, enqueued_token_refusal=refusal
    )
    request = ShardedJobInput(
        job=fast_job(),
        sharding=ShardingOptions(
            max_batch_requests=PER_SHARD,
            max_concurrent_batches=4,
            quota_retry=timedelta(seconds=1),
        ),
    )
    with stack.worker():
        handle = await stack.client.start_workflow(
            SHARDED_JOB_WORKFLOW_NAME,
            request,
            id=f"e2e-sharded-{uuid.uuid4().hex[:8]}",
            task_queue=stack.task_queue,
            result_type=ShardedJobResult,
        )
        result = await asyncio.wait_for(handle.result(), 150)
    assert result.status is JobStatus.SUCCEEDED, result.reason
    assert result.succeeded == REQUESTS
    assert ids_in(stack.data_dir / result.output_path) == [f"req-{i}" for i in range(REQUESTS)]
    assert ids_in(stack.data_dir / result.errors_path) == []
    if refusal == "failed_batch":
        assert result.quota_refusals >= 1, "the gateway refused at least one create"
    assert result.cost is not None and result.cost.total > 0
    # Priced from the children's counts by model: what reading the merged results gives.
    read_back = cost_of(tally_usage(stack.data_dir / result.output_path), load_prices())
    assert [(r.model, r.input_tokens, r.output_tokens) for r in result.cost.by_model] == [
        (r.model, r.input_tokens, r.output_tokens) for r in read_back.by_model
    ]
    assert result.cost.total == pytest.approx(read_back.total)


async def test_the_starter_runs_a_sharded_job_as_one_job(stack: Stack) -> None:
    stack.write_input("in.jsonl", 10)
    env = {**os.environ, **stack.worker_env(), "TEMPORAL_WEB_UI": "http://ui.example:8233"}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "starter.py", *args],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    with stack.worker():
        run = await asyncio.to_thread(
            cli,
            "run",
            str(stack.data_dir / "in.jsonl"),
            "--max-batch-requests",
            "3",
            "--max-concurrent-batches",
            "2",
            "--poll-seconds",
            "1",
            "--id",
            "cli-sharded-1",
        )
        assert run.returncode == 0, run.stderr
        assert "status:   succeeded" in run.stdout
        assert "shards:   4 in 1 round(s)" in run.stdout
        assert "requests: 10 total, 10 succeeded, 0 failed" in run.stdout
        assert "cost:     total: $" in run.stdout
        assert ids_in(stack.data_dir / "in.output.jsonl") == [f"req-{i}" for i in range(10)]

        result = await asyncio.to_thread(cli, "result", "cli-sharded-1", "--json")
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["shards"] == 4
        status = await asyncio.to_thread(cli, "status", "cli-sharded-1")
        assert "COMPLETED" in status.stdout and "10/10 finished" in status.stdout
        listing = await asyncio.to_thread(cli, "list")
        assert "cli-sharded-1 " in listing.stdout and "cli-sharded-1-shard-3" in listing.stdout
