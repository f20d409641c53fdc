"""The sharded job on the time-skipping server: shards, admission, quota, resubmission, cancel."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import MetricBuffer, Runtime, TelemetryConfig
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.sharding import ShardingActivities
from contracts.job import BatchJobInput, JobStatus
from contracts.names import QUERY_SHARDS
from contracts.sharding import ShardedJobInput, ShardedJobResult, ShardedProgress, ShardingOptions
from observability.names import METRIC_JOB_COST, METRIC_TOKENS
from shards.cost import load_prices
from storage import LocalStorage, Stores
from tests.workflows.shard_gateway import (
    COMPLETION_TOKENS,
    PROMPT_TOKENS,
    ShardGateway,
    error_codes,
    read_ids,
    write_input,
)
from workflows.batch_job import BatchJobWorkflow
from workflows.sharded_job import ShardedBatchJobWorkflow


def sharded(**options: Any) -> ShardedJobInput:
    return ShardedJobInput(
        job=BatchJobInput(input_path="in.jsonl", poll_interval=timedelta(seconds=30)),
        sharding=ShardingOptions(**options),
    )


async def run(env: WorkflowEnvironment, gateway: ShardGateway, request: ShardedJobInput) -> Any:
    async with gateway.serving(env) as start:
        handle = await start(request)
        return await handle.result()


async def test_shards_merge_into_one_file_in_input_order_each_custom_id_once(
    time_skipping_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    ids = write_input(tmp_path / "in.jsonl", 23)
    refused = {"req-0003", "req-0017"}
    gateway = ShardGateway(
        tmp_path, rule=lambda cid, sent: (400, "invalid_request_error") if cid in refused else None
    )
    result = await run(
        time_skipping_env, gateway, sharded(max_batch_requests=5, max_concurrent_batches=2)
    )
    assert isinstance(result, ShardedJobResult)
    assert (result.shards, result.requests, result.succeeded, result.failed) == (5, 23, 21, 2)
    assert result.status is JobStatus.COMPLETED_WITH_FAILURES
    assert read_ids(tmp_path / "in.output.jsonl") == [i for i in ids if i not in refused]
    assert error_codes(tmp_path / "in.errors.jsonl") == dict.fromkeys(
        sorted(refused), "invalid_request_error"
    )
    assert result.resubmitted == 0, "a 400 would fail again: never resubmitted"
    assert gateway.most_running <= 2


async def test_a_byte_limit_cuts_shards_and_a_line_over_it_fails_the_job_naming_it(
    time_skipping_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    write_input(tmp_path / "in.jsonl", 6)
    line_bytes = len((tmp_path / "in.jsonl").read_text().splitlines()[0]) + 1
    result = await run(
        time_skipping_env, ShardGateway(tmp_path), sharded(max_batch_bytes=2 * line_bytes)
    )
    assert result.shards == 3

    with (tmp_path / "in.jsonl").open("a") as out:
        out.write(json.dumps({"custom_id": "huge", "body": {"x": "y" * 3 * line_bytes}}) + "\n")
    again = sharded(max_batch_bytes=2 * line_bytes)
    again.job = again.job.model_copy(update={"replace_results": True})  # the first run's
    with pytest.raises(WorkflowFailureError) as failure:
        await run(time_skipping_env, ShardGateway(tmp_path), again)
    message = str(failure.value.cause.cause if failure.value.cause else failure.value)
    assert "in.jsonl:7: custom_id='huge'" in message
    assert "--max-batch-bytes" in message


async def test_transient_failures_are_resubmitted_and_recovered_permanent_ones_kept(
    time_skipping_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    ids = write_input(tmp_path / "in.jsonl", 12)

    def rule(custom_id: str, sent: int) -> tuple[int, str] | None:
        if custom_id in ("req-0002", "req-0009") and sent == 0:
            return 429, "rate_limit_exceeded"
        if custom_id == "req-0005" and sent == 0:
            return 500, "server_error"
        if custom_id == "req-0007":
            return 400, "context_length_exceeded"
        return None

    gateway = ShardGateway(tmp_path, rule=rule)
    result = await run(time_skipping_env, gateway, sharded(max_batch_requests=4))
    assert (result.resubmitted, result.recovered, result.rounds) == (3, 3, 2)
    assert read_ids(tmp_path / "in.output.jsonl") == [i for i in ids if i != "req-0007"]
    assert error_codes(tmp_path / "in.errors.jsonl") == {"req-0007": "context_length_exceeded"}
    assert gateway.sent["req-0007"] == 1, "the permanent failure was sent once"
    assert gateway.sent["req-0002"] == 2


async def test_no_resubmission_when_resubmit_is_zero(
    time_skipping_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    write_input(tmp_path / "in.jsonl", 4)
    gateway = ShardGateway(
        tmp_path, rule=lambda cid, sent: (429, "rate_limit_exceeded") if cid == "req-0001" else None
    )
    result = await run(time_skipping_env, gateway, sharded(max_batch_requests=2, resubmit=0))
    assert (result.resubmitted, result.rounds, result.failed) == (0, 1, 1)
    assert error_codes(tmp_path / "in.errors.jsonl") == {"req-0001": "rate_limit_exceeded"}


async def test_a_create_refused_for_quota_waits_and_is_admitted_later(
    time_skipping_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    ids = write_input(tmp_path / "in.jsonl", 6)
    gateway = ShardGateway(tmp_path, quota_refusals=3)
    result = await run(
        time_skipping_env,
        gateway,
        sharded(max_batch_requests=2, max_concurrent_batches=1),
    )
    assert result.status is JobStatus.SUCCEEDED
    assert result.quota_refusals == 3
    assert read_ids(tmp_path / "in.output.jsonl") == ids
    assert gateway.creates == 6


async def test_admission_keeps_the_estimated_enqueued_tokens_within_the_budget(
    time_skipping_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    write_input(tmp_path / "in.jsonl", 12, pad=400)
    gateway = ShardGateway(tmp_path)
    # Each 2-request shard is about 2 * (100 + 6) tokens: a budget of 450 fits two.
    result = await run(
        time_skipping_env,
        gateway,
        sharded(max_batch_requests=2, max_concurrent_batches=6, max_enqueued_tokens=450),
    )
    assert result.status is JobStatus.SUCCEEDED
    assert 1 <= gateway.most_running <= 2


async def shards_done(
    env: WorkflowEnvironment, handle: WorkflowHandle[Any, Any], count: int
) -> None:
    """Skip time (nothing skips it while no result is awaited) until count shards ended."""
    for _ in range(200):
        progress = await handle.query(QUERY_SHARDS, result_type=ShardedProgress)
        if progress.shards_done >= count:
            return
        await env.sleep(timedelta(seconds=10))
        await asyncio.sleep(0.02)
    raise AssertionError(f"fewer than {count} shards ended")


async def test_cancel_of_the_parent_cancels_shards_in_flight_and_keeps_what_finished(
    time_skipping_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    ids = write_input(tmp_path / "in.jsonl", 8)
    gateway = ShardGateway(tmp_path, hang=lambda key: "-shard-2/" in key or "-shard-3/" in key)
    async with gateway.serving(time_skipping_env) as start:
        handle = await start(sharded(max_batch_requests=2, max_concurrent_batches=4))
        await shards_done(time_skipping_env, handle, 2)
        await handle.cancel()
        result = await handle.result()
    assert result.status is JobStatus.CANCELLED
    assert read_ids(tmp_path / "in.output.jsonl") == ids[:4]
    assert error_codes(tmp_path / "in.errors.jsonl") == dict.fromkeys(ids[4:], "batch_cancelled")
    cancelled = [b for b in gateway.batches.values() if b.cancel_requested]
    assert len(cancelled) == 2


async def test_many_small_shards_continue_as_new_with_a_bounded_history(
    time_skipping_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    ids = write_input(tmp_path / "in.jsonl", 40)
    gateway = ShardGateway(tmp_path)
    async with gateway.serving(time_skipping_env) as start:
        handle = await start(
            sharded(max_batch_requests=1, max_concurrent_batches=4, children_per_run=8)
        )
        result = await handle.result()
        first_run = time_skipping_env.client.get_workflow_handle(
            handle.id, run_id=handle.result_run_id
        )
        history = await first_run.fetch_history()
    assert result.shards == 40 and result.succeeded == 40
    assert read_ids(tmp_path / "in.output.jsonl") == ids
    events = history.events
    assert events[-1].HasField("workflow_execution_continued_as_new_event_attributes")
    # About 8 events a child (initiated, started, completed, tasks between): not 40 children.
    assert len(events) < 8 * 12


async def test_cost_comes_from_the_responses_usage(
    time_skipping_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    write_input(tmp_path / "in.jsonl", 5)
    result = await run(time_skipping_env, ShardGateway(tmp_path), sharded(max_batch_requests=2))
    assert result.cost is not None
    [row] = result.cost.by_model
    assert (row.model, row.priced_as) == ("gpt-4o-mini-2024-07-18", "gpt-4o-mini")
    assert (row.input_tokens, row.output_tokens) == (5 * PROMPT_TOKENS, 5 * COMPLETION_TOKENS)
    price = load_prices().models["gpt-4o-mini"]
    expected = (5 * PROMPT_TOKENS * price.input + 5 * COMPLETION_TOKENS * price.output) / 1e6
    assert result.cost.total == pytest.approx(expected)
    assert result.usage.prompt_tokens == 5 * PROMPT_TOKENS


async def test_tokens_and_cost_metrics_are_recorded_once_per_job(
    time_skipping_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    buffer = MetricBuffer(10_000)
    worker_client = await Client.connect(
        time_skipping_env.client.service_client.config.target_host,
        namespace=time_skipping_env.client.namespace,
        data_converter=pydantic_data_converter,
        runtime=Runtime(telemetry=TelemetryConfig(metrics=buffer)),
    )
    write_input(tmp_path / "in.jsonl", 4)
    gateway = ShardGateway(tmp_path)
    sharding = ShardingActivities(Stores(LocalStorage(tmp_path)), "openai")
    queue = f"test-{uuid.uuid4()}"
    async with Worker(
        worker_client,
        task_queue=queue,
        workflows=[BatchJobWorkflow, ShardedBatchJobWorkflow],
        activities=[*gateway.activities(), *sharding.all()],
        max_cached_workflows=0,  # every workflow task replays the history from the start
    ):
        result = await time_skipping_env.client.execute_workflow(
            ShardedBatchJobWorkflow.run,
            sharded(max_batch_requests=2),
            id=f"job-{uuid.uuid4()}",
            task_queue=queue,
        )
    tokens: Counter[str] = Counter()
    costs: list[float] = []
    for update in buffer.retrieve_updates():
        if update.metric.name == METRIC_TOKENS:
            tokens[str(update.attributes["direction"])] += int(update.value)
        elif update.metric.name == METRIC_JOB_COST:
            costs.append(float(update.value))
    assert tokens == {"input": 4 * PROMPT_TOKENS, "output": 4 * COMPLETION_TOKENS}
    assert result.cost is not None
    assert costs == [pytest.approx(result.cost.total)]


async def test_gateway_order_still_holds_each_custom_id_once_across_rounds(
    time_skipping_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    ids = write_input(tmp_path / "in.jsonl", 9)
    gateway = ShardGateway(
        tmp_path,
        rule=lambda cid, sent: (503, "server_error") if cid == "req-0004" and not sent else None,
    )
    result = await run(time_skipping_env, gateway, sharded(max_batch_requests=3, order="gateway"))
    written = read_ids(tmp_path / "in.output.jsonl")
    assert sorted(written) == ids and len(set(written)) == len(written)
    assert read_ids(tmp_path / "in.errors.jsonl") == []
    assert (result.resubmitted, result.recovered) == (1, 1)


async def test_a_shard_whose_child_fails_is_reported_with_its_cause_and_the_rest_kept(
    time_skipping_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    ids = write_input(tmp_path / "in.jsonl", 6)
    gateway = ShardGateway(
        tmp_path, upload_refusal=("-shard-1/", "upload answered 413; use --max-batch-bytes")
    )
    result = await run(time_skipping_env, gateway, sharded(max_batch_requests=2))
    assert result.status is JobStatus.COMPLETED_WITH_FAILURES
    assert result.failed_shards == 1
    assert result.reason is not None and "--max-batch-bytes" in result.reason
    assert read_ids(tmp_path / "in.output.jsonl") == ids[:2] + ids[4:]
    assert error_codes(tmp_path / "in.errors.jsonl") == dict.fromkeys(ids[2:4], "shard_failed")
