"""The job against other gateways' shapes, keys, missing routes and bad configuration."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import timedelta

import httpx
import pytest
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError

from contracts.job import BatchJobInput, BatchJobResult, JobStatus
from tests.e2e.conftest import Stack
from tests.e2e.helpers import assert_each_request_exactly_once, fast_job, start, wait_for

pytestmark = pytest.mark.e2e

SECRET = "sk-test-e2e-0123456789abcdef"


async def run(stack: Stack, job: BatchJobInput, **worker_env: str) -> BatchJobResult:
    with stack.worker(**worker_env) as worker:
        handle = await start(stack, job, prefix="cond")
        try:
            return await asyncio.wait_for(handle.result(), 60)
        finally:
            stack.last_log = worker.log()
            stack.last_handle = handle


def gateway_counts(stack: Stack) -> tuple[int, int]:
    with httpx.Client(base_url=stack.emulator.base_url, timeout=10) as http:
        http.headers["api-key"] = SECRET
        http.headers["apikey"] = SECRET
        files = http.get("/files", params={"purpose": "batch"}).json()["data"]
        batches = http.get("/batches").json()["data"]
    return len(files), len(batches)


async def test_azure_dialect_end_to_end(stack: Stack):
    stack.write_input("in.jsonl", 25, model="my-globalbatch-deployment")
    stack.emulator.set_knobs(dialect="azure", auth_header="api-key", auth_key=SECRET)
    result = await run(stack, fast_job(), GATEWAY_DIALECT="azure", GATEWAY_API_KEY=SECRET)
    assert result.status is JobStatus.SUCCEEDED
    assert result.batch_status == "completed"
    assert result.requests.succeeded == 25
    assert result.error_file_id is None or result.error_file_id.startswith("file-")
    assert_each_request_exactly_once(stack, result, 25)


async def test_no_key_and_no_prompt_in_history_or_logs(stack: Stack):
    marker = "PROMPT-TEXT-" + uuid.uuid4().hex
    path = stack.data_dir / "in.jsonl"
    path.write_text(
        "".join(
            json.dumps(
                {
                    "custom_id": f"req-{i}",
                    "method": "POST",
                    "url": "/v1/chat/completions",
                    "body": {
                        "model": "gpt-4o-mini",
                        "messages": [{"role": "user", "content": f"{marker} {i}"}],
                    },
                }
            )
            + "\n"
            for i in range(5)
        )
    )
    stack.emulator.set_knobs(auth_header="apikey", auth_key=SECRET)
    result = await run(stack, fast_job(), GATEWAY_API_KEY=SECRET)
    assert result.status is JobStatus.SUCCEEDED
    history = await stack.last_handle.fetch_history()
    exported = history.to_json()
    assert len(exported) > 1000
    for needle in (SECRET, marker):
        assert needle not in exported
        assert needle not in stack.last_log
    assert marker in (stack.data_dir / result.output_path).read_text()


async def test_a_gateway_without_list_and_cancel_routes_still_completes(stack: Stack):
    stack.write_input("in.jsonl", 10)
    stack.emulator.set_knobs(unsupported_routes=["list_files", "list_batches", "cancel_batch"])
    result = await run(stack, fast_job())
    assert result.status is JobStatus.SUCCEEDED
    assert_each_request_exactly_once(stack, result, 10)
    # A first upload does not look (only a retry can adopt); every create does.
    assert "does not list batches" in stack.last_log


async def test_cancel_without_a_cancel_route_keeps_the_results(stack: Stack):
    stack.write_input("in.jsonl", 30)
    stack.emulator.set_knobs(
        unsupported_routes=["cancel_batch"], line_latency_seconds=0.1, batch_concurrency=1
    )
    with stack.worker():
        handle = await start(stack, fast_job(), prefix="cond")
        await wait_for(handle, lambda p: p.batch_status == "in_progress")
        await handle.cancel()
        result = await asyncio.wait_for(handle.result(), 60)
    assert result.status is JobStatus.CANCELLED
    assert "could not cancel" in (result.reason or "")
    assert result.batch_status == "completed"
    assert result.requests.succeeded == 30
    assert_each_request_exactly_once(stack, result, 30)


async def test_cancelling_a_job_cancels_its_batch_and_keeps_finished_lines(stack: Stack):
    stack.write_input("in.jsonl", 40)
    stack.emulator.set_knobs(line_latency_seconds=0.1, batch_concurrency=1)
    with stack.worker():
        handle = await start(stack, fast_job(), prefix="cond")
        await wait_for(handle, lambda p: p.batch_status == "in_progress")
        await asyncio.sleep(1.0)
        await handle.cancel()
        result = await asyncio.wait_for(handle.result(), 60)
    assert result.status is JobStatus.CANCELLED
    assert result.batch_status == "cancelled"
    assert 0 < result.requests.succeeded < 40
    assert result.requests.not_run == 40 - result.requests.succeeded - result.requests.failed
    assert result.requests.failures_by_code.get("batch_cancelled") == result.requests.not_run
    assert_each_request_exactly_once(stack, result, 40)


async def expect_fast_failure(stack: Stack, job: BatchJobInput, **env: str) -> ApplicationError:
    started = time.monotonic()
    with pytest.raises(WorkflowFailureError) as failure:
        await run(stack, job, **env)
    assert time.monotonic() - started < 30, "a configuration error must not be retried"
    cause = failure.value.cause
    while cause is not None and not isinstance(cause, ApplicationError):
        cause = cause.cause
    assert isinstance(cause, ApplicationError)
    return cause


async def test_a_key_revoked_while_the_worker_runs_fails_the_job_fast(stack: Stack):
    """A wrong key at start stops the worker (tested below); one revoked later fails the job."""
    stack.write_input("in.jsonl", 5)
    stack.emulator.set_knobs(auth_header="apikey", auth_key=SECRET)
    with stack.worker(GATEWAY_API_KEY=SECRET) as worker:
        for _ in range(100):
            if "answers" in worker.log():
                break
            await asyncio.sleep(0.1)
        stack.emulator.set_knobs(auth_key="sk-rotated-key-987654")
        started = time.monotonic()
        handle = await start(stack, fast_job(), prefix="cond")
        with pytest.raises(WorkflowFailureError) as failure:
            await asyncio.wait_for(handle.result(), 60)
    assert time.monotonic() - started < 30, "a rejected key must not be retried"
    message = str(failure.value.cause.cause)
    assert "401" in message and "GATEWAY_API_KEY" in message
    assert SECRET not in message
    stack.emulator.set_knobs(auth_key=SECRET)
    assert gateway_counts(stack) == (0, 0)


async def test_a_gateway_url_without_the_routes_fails_fast(stack: Stack):
    stack.write_input("in.jsonl", 5)
    error = await expect_fast_failure(
        stack, fast_job(), GATEWAY_URL=stack.emulator.base_url + "/not-the-gateway"
    )
    assert "404" in error.message
    assert gateway_counts(stack) == (0, 0)


async def test_bad_input_fails_before_anything_reaches_the_gateway(stack: Stack):
    stack.write_input("in.jsonl", 3)
    with (stack.data_dir / "in.jsonl").open("a") as out:
        out.write(
            json.dumps(
                {
                    "custom_id": "req-1",
                    "method": "POST",
                    "url": "/v1/chat/completions",
                    "body": {"model": "gpt-4o-mini"},
                }
            )
            + "\n"
        )
    error = await expect_fast_failure(stack, fast_job())
    assert error.type == "InvalidInput"
    assert "in.jsonl:4: custom_id='req-1'" in error.message
    assert "duplicate of line 2" in error.message
    assert gateway_counts(stack) == (0, 0)


async def test_a_results_path_outside_the_data_dir_is_refused(stack: Stack):
    stack.write_input("in.jsonl", 3)
    error = await expect_fast_failure(stack, fast_job(output_path="../escaped.jsonl"))
    assert error.type == "InvalidLocation"
    assert "outside the data directory" in error.message or "'..'" in error.message
    assert gateway_counts(stack) == (0, 0)
    assert not (stack.data_dir.parent / "escaped.jsonl").exists()


async def test_a_worker_with_a_wrong_key_refuses_to_start(stack: Stack):
    stack.emulator.set_knobs(auth_header="apikey", auth_key=SECRET)
    worker = stack.worker("wrong-key", GATEWAY_API_KEY="sk-not-the-key-123456").start()
    assert worker.proc is not None
    code = await asyncio.to_thread(worker.proc.wait, 60)
    worker.stop()
    assert code == 2
    last = worker.log().strip().splitlines()[-1]
    assert last.startswith("worker: ") and "401" in last and "GATEWAY_API_KEY" in last
    assert "sk-not-the-key-123456" not in worker.log()


async def test_a_worker_says_when_the_gateway_is_unreachable(stack: Stack):
    worker = stack.worker("no-gateway", GATEWAY_URL="http://127.0.0.1:9").start()
    try:
        for _ in range(200):
            if "no answer from the gateway" in worker.log():
                break
            await asyncio.sleep(0.1)
        assert "no answer from the gateway at http://127.0.0.1:9" in worker.log()
        assert "GATEWAY_URL" in worker.log()
        assert worker.proc is not None and worker.proc.poll() is None, "it keeps running"
    finally:
        worker.stop()


async def test_a_batch_stuck_in_finalizing_hits_its_deadline_and_keeps_what_finished(
    stack: Stack,
):
    stack.write_input("in.jsonl", 12)
    stack.emulator.set_knobs(force_outcome="stuck_finalizing")
    job = fast_job(deadlines={"finalizing": timedelta(seconds=4)})
    result = await run(stack, job)
    assert result.status is JobStatus.DEADLINE_EXCEEDED
    assert "finalizing" in (result.reason or "")
    assert result.batch_status == "cancelled"
    assert result.requests.succeeded == 12, "lines finished before finalizing are kept"
    assert_each_request_exactly_once(stack, result, 12)
    _, batches = gateway_counts(stack)
    assert batches == 1
