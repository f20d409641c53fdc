"""On real processes: a worker SIGKILLed while its POST /batches is in flight, through a
gateway that cannot list batches, never leads to a second batch; two plain jobs whose
batches together exceed the enqueued-token quota both complete, the second waiting (whatever
shape the refusal takes); a batch larger than the quota fails at once, naming the limit."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import timedelta

import httpx
import pytest
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError

from contracts.job import JobStatus, QuotaRetry
from contracts.names import FAILURE_CREATE_OUTCOME_UNKNOWN, JOB_KEY_METADATA
from emulator.fake_model import prompt_tokens
from tests.e2e.conftest import Stack
from tests.e2e.helpers import assert_each_request_exactly_once, fast_job, start, wait_for
from tests.e2e.test_create_outcome_e2e import all_batches

pytestmark = pytest.mark.e2e


async def test_a_worker_killed_during_its_post_never_leads_to_a_second_batch(stack: Stack):
    stack.write_input("in.jsonl", 12)
    # Every answer held back 4 s: the batch exists while its POST is still unanswered.
    stack.emulator.set_knobs(response_delay_seconds=4.0, unsupported_routes=["list_batches"])
    first = stack.worker("first").start()
    try:
        lost = await start(stack, fast_job(), prefix="lost-post")
        for _ in range(1200):
            if sum(stack.emulator.stats()["batches_by_status"].values()):
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the create never reached the gateway")
    finally:
        first.kill()
    stack.emulator.set_knobs(response_delay_seconds=0.0)

    with stack.worker("second") as second:
        with pytest.raises(WorkflowFailureError) as failure:
            await asyncio.wait_for(lost.result(), 60)
        cause = failure.value.cause.cause
        assert isinstance(cause, ApplicationError)
        assert cause.type == FAILURE_CREATE_OUTCOME_UNKNOWN
        assert f"{JOB_KEY_METADATA}={lost.id}/" in cause.message
        assert "starter.py attach" in cause.message

        stack.emulator.set_knobs(unsupported_routes=[])
        [made] = all_batches(stack)
        assert made["metadata"][JOB_KEY_METADATA].startswith(lost.id + "/")
        stack.emulator.set_knobs(unsupported_routes=["list_batches"])

        attached = await start(stack, fast_job(batch_id=made["id"]), prefix="attach")
        result = await asyncio.wait_for(attached.result(), 60)
        stack.last_log = second.log()

    assert result.status is JobStatus.SUCCEEDED
    assert result.batch_id == made["id"]
    assert_each_request_exactly_once(stack, result, 12)
    stack.emulator.set_knobs(unsupported_routes=[])
    assert [b["id"] for b in all_batches(stack)] == [made["id"]], "one batch, never a second"


def _tokens(stack: Stack, name: str) -> int:
    lines = (stack.data_dir / name).read_text().splitlines()
    return sum(prompt_tokens("/v1/chat/completions", json.loads(x)["body"]) for x in lines)


@pytest.mark.parametrize("refusal", ["failed_batch", "http_429", "late_failed"])
async def test_two_jobs_over_the_quota_both_complete_the_second_waiting(stack: Stack, refusal: str):
    count = 12
    stack.write_input("first.jsonl", count)
    stack.write_input("second.jsonl", count)
    one = _tokens(stack, "first.jsonl")
    # Room for one batch at a time, whose lines run slowly enough to be refused against.
    stack.emulator.set_knobs(
        enqueued_token_limit=one + one // 2,
        enqueued_token_refusal=refusal,
        line_latency_seconds=0.5,
        batch_concurrency=1,
    )
    retry = QuotaRetry(first=timedelta(seconds=1), most=timedelta(seconds=2))
    with stack.worker() as worker:
        first = await start(stack, fast_job(input_path="first.jsonl", quota_retry=retry))
        await wait_for(first, lambda p: p.batch_status == "in_progress")
        second = await start(stack, fast_job(input_path="second.jsonl", quota_retry=retry))
        waiting = await wait_for(
            second, lambda p: "waiting for enqueued-token quota" in (p.reason or "")
        )
        results = await asyncio.wait_for(asyncio.gather(first.result(), second.result()), 120)
        stack.last_log = worker.log()

    assert waiting.gateway_error is not None and "enqueued tokens" in waiting.gateway_error
    for result in results:
        assert result.status is JobStatus.SUCCEEDED, result.reason
        assert_each_request_exactly_once(stack, result, count)
    running = [b for b in all_batches(stack) if b["status"] != "failed"]
    assert sorted(b["id"] for b in running) == sorted(r.batch_id for r in results)


async def test_a_batch_larger_than_the_quota_fails_at_once_naming_the_limit(stack: Stack):
    stack.write_input("big.jsonl", 40)
    limit = _tokens(stack, "big.jsonl") // 2
    stack.emulator.set_knobs(enqueued_token_limit=limit)
    started = time.monotonic()
    with stack.worker() as worker:
        handle = await start(stack, fast_job(input_path="big.jsonl"))
        with pytest.raises(WorkflowFailureError) as failure:
            await asyncio.wait_for(handle.result(), 60)
        stack.last_log = worker.log()

    assert time.monotonic() - started < 30, "no wait for a quota it can never fit"
    cause = failure.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "QuotaNeverFits"
    assert f"enqueued-token limit of {limit:,}" in cause.message
    assert "--max-enqueued-tokens" in cause.message
    async with httpx.AsyncClient(base_url=stack.emulator.base_url, timeout=30) as http:
        files = (await http.get("/files", params={"purpose": "batch"})).json()["data"]
    assert files == [], "the refused batch's upload is deleted"
