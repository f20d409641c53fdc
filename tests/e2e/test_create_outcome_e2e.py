"""A create that got no answer through a gateway that cannot list batches: the job stops
at once and names what to attach to; a job attached to that batch collects it. An
upload the gateway keeps pending is waited for. A cancel that lands while the create
is in flight leaves no batch running."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx
import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError, is_cancelled_exception

from contracts.job import JobStatus
from contracts.names import FAILURE_CREATE_OUTCOME_UNKNOWN, JOB_KEY_METADATA
from tests.e2e.conftest import Stack
from tests.e2e.helpers import assert_each_request_exactly_once, fast_job, start

pytestmark = pytest.mark.e2e


def all_batches(stack: Stack) -> list[dict]:
    with httpx.Client(base_url=stack.emulator.base_url, timeout=10) as http:
        return list(http.get("/batches", params={"limit": 100}).json()["data"])


async def test_an_unanswered_create_stops_the_job_and_attaching_collects_its_batch(stack: Stack):
    stack.write_input("in.jsonl", 12)
    stack.emulator.set_knobs(ambiguous_creates=1, unsupported_routes=["list_batches"])
    with stack.worker() as worker:
        lost = await start(stack, fast_job(), prefix="ambiguous")
        with pytest.raises(WorkflowFailureError) as failure:
            await asyncio.wait_for(lost.result(), 60)
        cause = failure.value.cause.cause
        assert isinstance(cause, ApplicationError)
        assert cause.type == FAILURE_CREATE_OUTCOME_UNKNOWN
        assert f"{JOB_KEY_METADATA}={lost.id}/" in cause.message

        stack.emulator.set_knobs(unsupported_routes=[])
        [made] = all_batches(stack)
        assert made["metadata"][JOB_KEY_METADATA].startswith(lost.id + "/")
        stack.emulator.set_knobs(unsupported_routes=["list_batches"])

        attached = await start(stack, fast_job(batch_id=made["id"]), prefix="attach")
        result = await asyncio.wait_for(attached.result(), 60)
        stack.last_log = worker.log()

    assert result.status is JobStatus.SUCCEEDED
    assert result.batch_id == made["id"]
    assert result.requests.succeeded == 12
    assert_each_request_exactly_once(stack, result, 12)
    stack.emulator.set_knobs(unsupported_routes=[])
    assert [b["id"] for b in all_batches(stack)] == [made["id"]], "one batch, never a second"


async def test_a_create_that_commits_after_its_answer_timed_out_makes_one_batch(stack: Stack):
    stack.write_input("in.jsonl", 12)
    # The gateway answers 504; the provider makes the batch 6 s later, well after the
    # retry (2 s) first looked and found nothing.
    stack.emulator.set_knobs(late_creates=1, late_create_seconds=6.0)
    with stack.worker() as worker:
        handle = await start(stack, fast_job(), prefix="late")
        result = await asyncio.wait_for(handle.result(), 90)
        stack.last_log = worker.log()

    assert result.status is JobStatus.SUCCEEDED
    assert_each_request_exactly_once(stack, result, 12)
    assert [b["id"] for b in all_batches(stack)] == [result.batch_id], "one batch, never two"
    assert "looking for its batch" in stack.last_log


async def test_an_upload_the_gateway_keeps_pending_is_waited_for(stack: Stack):
    stack.write_input("in.jsonl", 5)
    stack.emulator.set_knobs(dialect="azure", file_processing_seconds=3.0)
    with stack.worker(GATEWAY_DIALECT="azure") as worker:
        handle = await start(stack, fast_job(), prefix="pending")
        result = await asyncio.wait_for(handle.result(), 60)
        stack.last_log = worker.log()
    assert result.status is JobStatus.SUCCEEDED
    assert_each_request_exactly_once(stack, result, 5)
    history = await handle.fetch_history()
    scheduled = {
        event.event_id: event.activity_task_scheduled_event_attributes.activity_type.name
        for event in history.events
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    }
    started = [
        (scheduled[attrs.scheduled_event_id], attrs.attempt)
        for event in history.events
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
        for attrs in [event.activity_task_started_event_attributes]
    ]
    [(_, looks)] = [entry for entry in started if entry[0] == "await_file_processed"]
    assert looks > 1, "the file was seen pending at least once"
    assert ("create_batch", 1) in started, "the create was never refused for a pending file"


async def test_an_upload_never_processed_ends_at_the_validating_deadline_and_is_deleted(
    stack: Stack,
):
    stack.write_input("in.jsonl", 5)
    stack.emulator.set_knobs(dialect="azure", file_processing_seconds=10**6)
    job = fast_job(deadlines={"validating": timedelta(seconds=4)})
    with stack.worker(GATEWAY_DIALECT="azure") as worker:
        handle = await start(stack, job, prefix="never-processed")
        with pytest.raises(WorkflowFailureError) as failure:
            await asyncio.wait_for(handle.result(), 60)
        stack.last_log = worker.log()

    cause = failure.value.cause.cause
    assert isinstance(cause, ApplicationError) and cause.type == "InputFileUnusable"
    assert "as 'pending'" in cause.message and "validating deadline" in cause.message
    file_id = cause.message.split("input file ")[1].split(" ")[0]
    assert file_id.startswith("file-")
    async with httpx.AsyncClient(base_url=stack.emulator.base_url, timeout=10) as http:
        listed = (await http.get("/files", params={"purpose": "batch"})).json()["data"]
    assert listed == [], "the upload is deleted"
    assert all_batches(stack) == [], "no batch was made"


async def test_a_cancel_while_the_create_is_in_flight_leaves_no_batch_running(stack: Stack):
    stack.write_input("in.jsonl", 10)
    # Every answer held back 3 s: the batch exists while its create is still unanswered,
    # and it validates for 2 minutes, as a real one would still be when the cancel lands.
    stack.emulator.set_knobs(response_delay_seconds=3.0, validating_seconds=120.0)
    with stack.worker() as worker:
        handle = await start(stack, fast_job(), prefix="cancel-create")
        for _ in range(1200):
            if sum(stack.emulator.stats()["batches_by_status"].values()):
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the create never reached the gateway")
        await handle.cancel()
        with pytest.raises(WorkflowFailureError) as failure:
            await asyncio.wait_for(handle.result(), 90)
        stack.last_log = worker.log()

    assert is_cancelled_exception(failure.value.cause)
    stack.emulator.set_knobs(response_delay_seconds=0.0)
    [batch] = all_batches(stack)
    assert batch["status"] in ("cancelling", "cancelled"), batch["status"]
