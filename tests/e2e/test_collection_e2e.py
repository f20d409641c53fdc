"""Collection on real processes: an input rewritten while its batch runs costs no result."""

from __future__ import annotations

import asyncio

import pytest

from contracts.job import JobPhase, JobStatus
from tests.e2e.conftest import Stack
from tests.e2e.helpers import assert_each_request_exactly_once, fast_job, start, wait_for

pytestmark = pytest.mark.e2e


async def test_an_input_rewritten_while_its_batch_runs_is_still_collected(stack: Stack):
    """A nightly schedule writes the next night's file while this night's batch runs."""
    count = 20
    stack.write_input("in.jsonl", count)
    stack.emulator.set_knobs(line_latency_seconds=0.1, batch_concurrency=1)
    with stack.worker():
        handle = await start(stack, fast_job())
        await wait_for(handle, lambda p: p.phase is JobPhase.WAITING)
        (stack.data_dir / "in.jsonl").write_text("the next night's file, not even JSON\n")
        result = await asyncio.wait_for(handle.result(), 90)

    assert result.status is JobStatus.SUCCEEDED, result.reason
    assert result.requests.succeeded == count
    assert_each_request_exactly_once(stack, result, count)
    assert not list(stack.data_dir.rglob("*.input-index")), "the index is gone once collected"
