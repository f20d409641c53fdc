"""A gateway that refuses the worker's key, or its route, for a while during the wait.

Real worker processes, the real dev server and the emulator: a key rotating across
gateway nodes is waited out, and one refused for longer than the worker's patience
ends the job without touching the batch, which `attach` then collects.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError

from cli.progress import live_progress
from contracts.job import JobStatus
from tests.e2e.conftest import Stack
from tests.e2e.helpers import assert_each_request_exactly_once, fast_job, start, wait_for

pytestmark = pytest.mark.e2e

SECRET = "sk-test-e2e-rotating-0123456789"


def cancels(stack: Stack) -> int:
    return int(stack.emulator.stats()["api_calls"].get("POST /batches/{id}/cancel", 0))


async def trouble_shown(handle: object, phrase: str, within: float = 60) -> str:
    """What `starter.py status` shows as the job's trouble, once it names the phrase."""
    deadline = time.monotonic() + within
    trouble: str | None = None
    while time.monotonic() < deadline:
        _, trouble = await live_progress(handle)  # type: ignore[arg-type]
        if trouble is not None and phrase in trouble:
            return trouble
        await asyncio.sleep(0.3)
    raise AssertionError(f"never shown: {phrase!r}; last: {trouble!r}")


async def test_a_key_refused_for_a_while_during_the_wait_is_waited_out(stack: Stack) -> None:
    stack.write_input("in.jsonl", 20)
    stack.emulator.set_knobs(line_latency_seconds=0.1, batch_concurrency=1)
    with stack.worker() as worker:
        handle = await start(stack, fast_job(), prefix="refused")
        await wait_for(handle, lambda p: p.batch_status == "in_progress")
        stack.emulator.set_knobs(refused_batch_reads=10_000)
        shown = await trouble_shown(handle, "the gateway refuses this worker's key since")
        assert "401" in shown
        stack.emulator.set_knobs(refused_batch_reads=3, refused_batch_read_answer="no_route")
        result = await asyncio.wait_for(handle.result(), 90)
        log = worker.log()
    assert result.status is JobStatus.SUCCEEDED
    assert result.requests.succeeded == 20
    assert_each_request_exactly_once(stack, result, 20)
    assert cancels(stack) == 0, "a healthy batch is not cancelled for a refused read"
    assert stack.emulator.stats()["refused_reads"] >= 4
    assert SECRET not in log


async def test_a_key_refused_past_the_patience_ends_the_job_and_attach_collects(
    stack: Stack,
) -> None:
    stack.write_input("in.jsonl", 20)
    stack.emulator.set_knobs(
        line_latency_seconds=0.1, batch_concurrency=1, auth_header="apikey", auth_key=SECRET
    )
    env = {"GATEWAY_API_KEY": SECRET, "GATEWAY_REFUSAL_PATIENCE_SECONDS": "3"}
    with stack.worker(**env):
        handle = await start(stack, fast_job(), prefix="revoked")
        progress = await wait_for(handle, lambda p: p.batch_status == "in_progress")
        batch_id = progress.batch_id
        assert batch_id is not None
        stack.emulator.set_knobs(auth_key="sk-rotated-away-9876543210")
        with pytest.raises(WorkflowFailureError) as failure:
            await asyncio.wait_for(handle.result(), 90)
        cause = failure.value.cause
        assert isinstance(cause, ApplicationError) and cause.type == "GatewayRefuses"
        assert "the gateway refuses this worker's key since" in cause.message
        assert f"giving up on batch {batch_id}" in cause.message
        assert f"`python starter.py attach {batch_id} in.jsonl`" in cause.message
        assert SECRET not in cause.message
        stack.emulator.set_knobs(auth_key=SECRET)
        assert cancels(stack) == 0, "a batch it could not read was not cancelled"

        attached = await start(stack, fast_job(batch_id=batch_id), prefix="attach")
        result = await asyncio.wait_for(attached.result(), 90)
    assert result.status is JobStatus.SUCCEEDED
    assert result.batch_id == batch_id
    assert_each_request_exactly_once(stack, result, 20)
