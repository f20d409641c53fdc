"""What a job leaves behind, on real processes: no input index, and no file at the gateway
unless it was asked to keep them or the gateway cannot delete."""

from __future__ import annotations

import asyncio

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError

from contracts.job import JobStatus
from contracts.names import FAILURE_BATCH_FAILED
from tests.e2e.conftest import Stack
from tests.e2e.helpers import assert_each_request_exactly_once, fast_job, gateway_objects, start

pytestmark = pytest.mark.e2e


def indexes(stack: Stack) -> list[str]:
    return [path.name for path in stack.data_dir.rglob("*.input-index")]


async def test_a_rejected_batch_leaves_no_index_and_no_upload(stack: Stack):
    stack.write_input("in.jsonl", 5)
    stack.emulator.set_knobs(force_outcome="failed")
    with stack.worker():
        handle = await start(stack, fast_job())
        with pytest.raises(WorkflowFailureError) as failure:
            await asyncio.wait_for(handle.result(), 60)
    cause = failure.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == FAILURE_BATCH_FAILED
    assert indexes(stack) == []
    files, batches = gateway_objects(stack, handle.id)
    assert [b["status"] for b in batches] == ["failed"]
    assert files == [], "the rejected batch's input is deleted"


async def test_a_gateway_that_cannot_delete_leaves_the_files_and_the_job_succeeds(stack: Stack):
    stack.write_input("in.jsonl", 5)
    stack.emulator.set_knobs(unsupported_routes=["delete_file"])
    with stack.worker() as worker:
        handle = await start(stack, fast_job())
        result = await asyncio.wait_for(handle.result(), 60)
        log = worker.log()
    assert result.status is JobStatus.SUCCEEDED
    assert_each_request_exactly_once(stack, result, 5)
    assert indexes(stack) == []
    assert result.gateway_files is not None and result.gateway_files.deleted == []
    assert set(result.gateway_files.left) == {result.input_file_id, result.output_file_id}
    files, _ = gateway_objects(stack, handle.id)
    assert [f["id"] for f in files] == [result.input_file_id]
    assert "no delete route" in log


async def test_keep_gateway_files_keeps_them(stack: Stack):
    stack.write_input("in.jsonl", 5)
    with stack.worker():
        handle = await start(stack, fast_job(keep_gateway_files=True))
        result = await asyncio.wait_for(handle.result(), 60)
    assert result.status is JobStatus.SUCCEEDED
    files, _ = gateway_objects(stack, handle.id)
    assert [f["id"] for f in files] == [result.input_file_id]
    assert indexes(stack) == [], "the index goes anyway"
    assert "DELETE /files/{id}" not in stack.emulator.stats()["api_calls"]
