"""Batch events on real processes: dev server, emulator posting events, receiver, worker.

The worker reads a waiting batch only every WEBHOOK_FALLBACK_POLL_SECONDS; the
jobs here hold their batch in validating until the test lets it go, so the
watch's first read sees it running and only an event (or that fallback poll)
can tell the job it ended.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook
from temporalio.api.enums.v1 import EventType, PendingActivityState

from contracts.job import JobProgress, JobStatus
from contracts.names import ACTIVITY_WATCH_BATCH, QUERY_PROGRESS, SHARDED_JOB_WORKFLOW_NAME
from contracts.sharding import ShardedJobInput, ShardedJobResult, ShardingOptions
from devstack.webhooks import WebhookReceiverProcess
from tests.e2e.conftest import Stack
from tests.e2e.helpers import assert_each_request_exactly_once, fast_job, start, wait_for

pytestmark = pytest.mark.e2e

REQUESTS = 6
NEVER = "3600"
"""A fallback poll far longer than any test here."""


@pytest.fixture
def receiver(stack: Stack) -> Iterator[WebhookReceiverProcess]:
    with WebhookReceiverProcess(stack.logs / "webhooks.log", stack.address) as process:
        process.wire(stack.emulator.base_url)
        yield process


async def history_counts(handle: Any) -> tuple[int, int]:
    """Signals the job received, and watches it cut short, as its history shows them."""
    signals = cancels = 0
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
            signals += 1
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_CANCEL_REQUESTED:
            cancels += 1
    return signals, cancels


async def watching(handle: Any) -> str:
    """The job's batch id, once its watch runs (so it has read the batch at least once)."""
    for _ in range(600):
        pending = (await handle.describe()).raw_description.pending_activities
        if (
            pending
            and pending[0].activity_type.name == ACTIVITY_WATCH_BATCH
            and pending[0].state == PendingActivityState.PENDING_ACTIVITY_STATE_STARTED
            and pending[0].heartbeat_details.payloads
        ):
            progress = await handle.query(QUERY_PROGRESS, result_type=JobProgress)
            assert progress.batch_id is not None
            return progress.batch_id
        await asyncio.sleep(0.05)
    raise AssertionError("the job's watch never ran")


def batch_reads(stack: Stack) -> int:
    return int(stack.emulator.stats()["api_calls"].get("GET /batches/{id}", 0))


async def test_a_job_completes_on_its_event(stack: Stack, receiver: WebhookReceiverProcess):
    stack.emulator.set_knobs(force_outcome="stuck_validating")
    stack.write_input("in.jsonl", REQUESTS)
    with stack.worker(WEBHOOK_FALLBACK_POLL_SECONDS=NEVER):
        handle = await start(stack, fast_job())
        batch_id = await watching(handle)
        reads_while_waiting = batch_reads(stack)
        stack.emulator.set_knobs(force_outcome="none")
        stack.emulator.force(batch_id, "none")
        result = await asyncio.wait_for(handle.result(), 60)
    assert result.status is JobStatus.SUCCEEDED
    assert_each_request_exactly_once(stack, result, REQUESTS)
    # Told, not polled: one read after the event, and the watch it cut short.
    assert batch_reads(stack) - reads_while_waiting <= 2
    assert await history_counts(handle) == (1, 1)
    async with httpx.AsyncClient(base_url=stack.emulator.base_url) as http:
        completed_at = (await http.get(f"/v1/batches/{batch_id}")).json()["completed_at"]
    closed = (await handle.describe()).close_time
    assert closed.timestamp() - completed_at < 10, "results written within seconds of the end"


def signed(
    secret: str, batch_id: str, *, webhook_id: str | None = None, age: float = 0.0
) -> tuple[bytes, dict[str, str]]:
    stamp = time.time() - age
    body = json.dumps(
        {
            "object": "event",
            "id": f"evt_{uuid.uuid4().hex}",
            "type": "batch.completed",
            "created_at": int(stamp),
            "data": {"id": batch_id},
        }
    )
    webhook_id = webhook_id or f"wh_{uuid.uuid4().hex}"
    signature = Webhook(secret).sign(webhook_id, datetime.fromtimestamp(stamp, UTC), body)
    headers = {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(stamp)),
        "webhook-signature": signature,
    }
    return body.encode(), headers


async def test_forged_stale_and_replayed_events_change_nothing(
    stack: Stack, receiver: WebhookReceiverProcess
):
    stack.emulator.set_knobs(force_outcome="stuck_validating")
    stack.write_input("in.jsonl", REQUESTS)
    forger = "whsec_" + base64.b64encode(b"not-the-endpoint-secret-01234567").decode()
    with stack.worker(WEBHOOK_FALLBACK_POLL_SECONDS=NEVER):
        handle = await start(stack, fast_job())
        batch_id = await watching(handle)
        async with httpx.AsyncClient(timeout=30) as http:
            forged = await http.post(receiver.url, content=b"", headers={})
            assert forged.status_code == 400
            for body, headers in (
                signed(forger, batch_id),
                signed(receiver.secret, batch_id, age=10 * 60),
            ):
                assert (
                    await http.post(receiver.url, content=body, headers=headers)
                ).status_code == 401
            assert await history_counts(handle) == (0, 0)

            # A genuine event is only a nudge: the job reads its batch, still validating.
            body, headers = signed(receiver.secret, batch_id)
            assert (await http.post(receiver.url, content=body, headers=headers)).status_code == 200
            replay = await http.post(receiver.url, content=body, headers=headers)
            assert replay.status_code == 200 and replay.json()["status"] == "duplicate"
        progress = await wait_for(handle, lambda p: p.batch_status == "validating")
        assert progress.phase == "waiting"
        assert (await history_counts(handle))[0] == 1, "the replay never reached the job"

        stack.emulator.set_knobs(force_outcome="none")
        stack.emulator.force(batch_id, "none")
        result = await asyncio.wait_for(handle.result(), 60)
    assert result.status is JobStatus.SUCCEEDED
    assert_each_request_exactly_once(stack, result, REQUESTS)


async def test_a_dropped_event_is_caught_by_the_fallback_poll(
    stack: Stack, receiver: WebhookReceiverProcess
):
    stack.emulator.set_knobs(force_outcome="stuck_validating", webhook_drop_rate=1.0)
    stack.write_input("in.jsonl", REQUESTS)
    with stack.worker(WEBHOOK_FALLBACK_POLL_SECONDS="4"):
        handle = await start(stack, fast_job())
        batch_id = await watching(handle)
        stack.emulator.set_knobs(force_outcome="none")
        stack.emulator.force(batch_id, "none")
        result = await asyncio.wait_for(handle.result(), 90)
    assert result.status is JobStatus.SUCCEEDED
    assert_each_request_exactly_once(stack, result, REQUESTS)
    assert stack.emulator.stats()["webhooks"]["dropped"] >= 1
    assert await history_counts(handle) == (0, 0)


async def test_duplicated_and_reordered_events_are_harmless(
    stack: Stack, receiver: WebhookReceiverProcess
):
    jobs = 3
    stack.emulator.set_knobs(
        force_outcome="stuck_validating", webhook_duplicates=2, webhook_reorder_seconds=1.5
    )
    for i in range(jobs):
        stack.write_input(f"in-{i}.jsonl", REQUESTS)
    with stack.worker(WEBHOOK_FALLBACK_POLL_SECONDS=NEVER):
        handles = [await start(stack, fast_job(input_path=f"in-{i}.jsonl")) for i in range(jobs)]
        batch_ids = [await watching(h) for h in handles]
        stack.emulator.set_knobs(force_outcome="none")
        for batch_id in batch_ids:
            stack.emulator.force(batch_id, "none")
        results = [await asyncio.wait_for(h.result(), 90) for h in handles]
    for handle, result in zip(handles, results, strict=True):
        assert result.status is JobStatus.SUCCEEDED
        assert_each_request_exactly_once(stack, result, REQUESTS)
        assert await history_counts(handle) == (1, 1), "three copies, one signal"
    assert "already handled" in receiver.log()


async def test_each_shard_finishes_on_its_own_event(stack: Stack, receiver: WebhookReceiverProcess):
    shards, per_shard = 3, 2
    stack.emulator.set_knobs(force_outcome="stuck_validating")
    stack.write_input("in.jsonl", shards * per_shard)
    request = ShardedJobInput(
        job=fast_job(),
        sharding=ShardingOptions(max_batch_requests=per_shard, max_concurrent_batches=shards),
    )
    parent_id = f"e2e-hooked-{uuid.uuid4().hex[:8]}"
    with stack.worker(WEBHOOK_FALLBACK_POLL_SECONDS=NEVER):
        parent = await stack.client.start_workflow(
            SHARDED_JOB_WORKFLOW_NAME,
            request,
            id=parent_id,
            task_queue=stack.task_queue,
            result_type=ShardedJobResult,
            execution_timeout=timedelta(minutes=10),
        )
        children = [
            stack.client.get_workflow_handle(f"{parent_id}-shard-{i}") for i in range(shards)
        ]
        batch_ids = []
        for child in children:
            for _ in range(600):
                try:
                    batch_ids.append(await watching(child))
                    break
                except Exception:  # the parent has not started this child yet
                    await asyncio.sleep(0.1)
        assert len(batch_ids) == shards
        stack.emulator.set_knobs(force_outcome="none")
        for batch_id in batch_ids:
            stack.emulator.force(batch_id, "none")
        result = await asyncio.wait_for(parent.result(), 120)
    assert result.status is JobStatus.SUCCEEDED, result.reason
    assert result.succeeded == shards * per_shard
    for child in children:
        assert await history_counts(child) == (1, 1)


async def test_an_event_no_job_knows_yet_is_asked_again_and_an_old_one_acknowledged(
    stack: Stack, receiver: WebhookReceiverProcess
):
    async with httpx.AsyncClient(timeout=30) as http:
        # Young: the job may not have recorded its batch yet; the provider delivers it again.
        body, headers = signed(receiver.secret, "batch_nobody_made")
        young = await http.post(receiver.url, content=body, headers=headers)
        assert young.status_code == 503
        # Created 20 minutes ago (delivered again now, freshly signed): nobody will know it.
        event = json.loads(body)
        event["created_at"] -= 20 * 60
        old_body = json.dumps(event)
        stamp = int(time.time())
        signature = Webhook(receiver.secret).sign(
            headers["webhook-id"], datetime.fromtimestamp(stamp, UTC), old_body
        )
        old = await http.post(
            receiver.url,
            content=old_body,
            headers={**headers, "webhook-timestamp": str(stamp), "webhook-signature": signature},
        )
        assert old.status_code == 200 and old.json()["status"] == "no job knows the batch"
    assert "batch_nobody_made" in receiver.log()
