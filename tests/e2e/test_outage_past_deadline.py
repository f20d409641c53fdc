"""No worker for longer than a phase's deadline, on the dev server with real worker processes.

The job's in_progress deadline is a few seconds. The worker is SIGKILLed while
the batch runs, the deadline passes with no worker at all, and a new worker
starts. A batch that finished meanwhile is collected, not cancelled: the
deadline is about the batch (the gateway's in_progress_at), and past it the
job reads the batch again before it acts. A batch still running past its
deadline is cancelled once a worker is back.
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any

import httpx
import pytest

from contracts.job import JobStatus, PhaseDeadlines
from tests.e2e.conftest import Stack
from tests.e2e.helpers import assert_each_request_exactly_once, fast_job, start, wait_for

pytestmark = pytest.mark.e2e

# Long enough that the first worker is killed well before it; short enough for a test.
DEADLINE = timedelta(seconds=5)
CANCEL_ROUTE = "POST /batches/{id}/cancel"


async def batch_at_gateway(stack: Stack, batch_id: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=stack.emulator.base_url, timeout=10) as http:
        answer = await http.get(f"/batches/{batch_id}")
        answer.raise_for_status()
        batch: dict[str, Any] = answer.json()
        return batch


async def kill_worker_while_in_progress(stack: Stack, requests: int) -> tuple[Any, str, int]:
    """Start the job, SIGKILL its only worker once the batch runs; the handle, batch and
    the gateway's in_progress_at."""
    stack.write_input("in.jsonl", requests)
    first = stack.worker("first").start()
    try:
        handle = await start(stack, fast_job(deadlines=PhaseDeadlines(in_progress=DEADLINE)))
        progress = await wait_for(handle, lambda p: p.batch_status == "in_progress", within=60)
    finally:
        first.kill()
    assert progress.batch_id is not None
    batch = await batch_at_gateway(stack, progress.batch_id)
    assert batch["status"] == "in_progress", "the batch must still run when the worker dies"
    in_progress_at = int(batch["in_progress_at"])
    assert time.time() < in_progress_at + DEADLINE.total_seconds(), (
        "the worker must die before the deadline, or this tests nothing"
    )
    return handle, progress.batch_id, in_progress_at


async def until(
    stack: Stack, batch_id: str, done: Any, what: str, within: float = 90
) -> dict[str, Any]:
    """Poll the gateway (no worker runs) until done(batch) holds, for at most `within` s."""
    give_up = time.monotonic() + within
    while time.monotonic() < give_up:
        batch = await batch_at_gateway(stack, batch_id)
        if done(batch):
            return batch
        await asyncio.sleep(0.25)
    raise AssertionError(f"{what} never happened; batch {batch}")


def past_deadline(in_progress_at: int) -> bool:
    return time.time() > in_progress_at + DEADLINE.total_seconds() + 1


async def test_a_batch_that_finished_while_no_worker_ran_is_collected(stack: Stack):
    requests = 14
    # About 7 s in progress: longer than its deadline, but it finishes.
    stack.emulator.set_knobs(line_latency_seconds=0.5, batch_concurrency=1)
    handle, batch_id, in_progress_at = await kill_worker_while_in_progress(stack, requests)

    await until(
        stack,
        batch_id,
        lambda b: b["status"] == "completed" and past_deadline(in_progress_at),
        "the batch completing with the deadline past",
    )
    with stack.worker("second"):
        result = await asyncio.wait_for(handle.result(), 90)

    assert result.status is JobStatus.SUCCEEDED, result.reason
    assert result.batch_status == "completed"
    assert result.requests.succeeded == requests
    assert_each_request_exactly_once(stack, result, requests)
    assert CANCEL_ROUTE not in stack.emulator.stats()["api_calls"], "a finished batch: no cancel"


async def test_a_batch_still_running_past_its_deadline_is_cancelled_once_a_worker_is_back(
    stack: Stack,
):
    requests = 30
    # About 60 s in progress: stuck, as far as a 5 s deadline goes.
    stack.emulator.set_knobs(line_latency_seconds=2.0, batch_concurrency=1)
    handle, batch_id, in_progress_at = await kill_worker_while_in_progress(stack, requests)

    await until(
        stack,
        batch_id,
        lambda b: past_deadline(in_progress_at),
        "the deadline passing",
    )
    assert (await batch_at_gateway(stack, batch_id))["status"] == "in_progress"
    assert CANCEL_ROUTE not in stack.emulator.stats()["api_calls"], "no worker, no cancel"
    with stack.worker("second"):
        result = await asyncio.wait_for(handle.result(), 90)

    assert result.status is JobStatus.DEADLINE_EXCEEDED, result.reason
    assert result.batch_status == "cancelled"
    assert result.requests.succeeded < requests
    assert result.requests.succeeded + result.requests.not_run == requests
    assert_each_request_exactly_once(stack, result, requests)
    assert stack.emulator.stats()["api_calls"][CANCEL_ROUTE] == 1
