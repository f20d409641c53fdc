"""`starter.py cancel` while an attached job still reads its batch: the batch is cancelled
at the gateway, and the command says so. Real processes: dev server, emulator, worker.py."""

from __future__ import annotations

import asyncio

import pytest
from temporalio.api.enums.v1 import EventType

from tests.cli.test_rerun_attach_cancel import (
    FAST,
    batch_made_by_hand,
    gateway_batches,
    starter,
    starter_now,
)
from tests.e2e.conftest import Stack

pytestmark = pytest.mark.e2e


async def test_cancel_while_attaching_cancels_the_batch_and_says_so(stack: Stack):
    stack.write_input("in.jsonl", 10)
    stack.emulator.set_knobs(validating_seconds=600)
    batch_id = batch_made_by_hand(stack, "in.jsonl")
    # Every answer held 6 s: the attach's read of the batch is still out when the cancel lands.
    stack.emulator.set_knobs(response_delay_seconds=6.0)
    with stack.worker(BATCH_ATTACH_ANY_BATCH="true"):  # a batch made by hand
        started = starter_now(
            stack, "attach", batch_id, str(stack.data_dir / "in.jsonl"), "--start", *FAST
        )
        assert started.returncode == 0, started.stderr
        workflow_id = started.stdout.strip()
        handle = stack.client.get_workflow_handle(workflow_id)
        for _ in range(600):
            pending = (await handle.describe()).raw_description.pending_activities
            if any(a.activity_type.name == "attach_batch" for a in pending):
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the attach never started")
        cancel = starter(stack, "cancel", "cancel", workflow_id)
        try:
            await cancel.stderr_shows("waiting up to 60s for the gateway to settle")
            stack.emulator.set_knobs(response_delay_seconds=0.0)
            code = await cancel.exit_code()
        finally:
            cancel.kill()
        history = await handle.fetch_history()

    assert code == 0, cancel.stderr()
    [batch] = gateway_batches(stack)
    assert batch["id"] == batch_id and batch["status"] == "cancelled"
    assert cancel.stdout().startswith(
        f"batch {batch_id} cancelled at the gateway; 0 of 10 requests had finished"
    ), cancel.stdout()
    [attach] = [
        e.event_id
        for e in history.events
        if e.activity_task_scheduled_event_attributes.activity_type.name == "attach_batch"
    ]
    [cancel_requested] = [
        e.event_id
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCEL_REQUESTED
    ]
    [attached] = [
        e.event_id
        for e in history.events
        if e.activity_task_completed_event_attributes.scheduled_event_id == attach
    ]
    assert attach < cancel_requested < attached, "the cancel landed while the batch was read"
