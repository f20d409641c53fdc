"""submit_batch: validation, the upload and the create as one step, against the real emulator.

One trip through Temporal instead of two, with what each step promised kept:
bad input fails at once and makes nothing, a retry adopts the earlier attempt's
upload and batch, a POST that may be out is never repeated on a gateway that
cannot list, a quota refusal is handed back, and a cancel leaves no index.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from temporalio.exceptions import ApplicationError

from activities.batch_activities import BatchActivities, upload_filename
from activities.input_index import input_index_location
from contracts.names import (
    FAILURE_CREATE_OUTCOME_UNKNOWN,
    FAILURE_INVALID_INPUT,
    JOB_KEY_METADATA,
)
from contracts.steps import SubmitBatchRequest, SubmittedBatch
from devstack.emulator import EmulatorProcess
from gateway.client import GatewayClient
from storage import LocalStorage
from tests.activities.helpers import CHAT, ActivityRunner, TemporalHeartbeats, chat_file
from tests.activities.test_batch_activities import list_all, validate_request, write_input

OUTPUT = "jobs/input.output.jsonl"


@pytest.fixture
def key(request: pytest.FixtureRequest) -> str:
    """A job key of its own per test: the emulator keeps every earlier test's objects."""
    return f"submit-{request.node.name}-{time.time_ns()}"


def submit(key: str, *, first_run: bool = True) -> SubmitBatchRequest:
    return SubmitBatchRequest(
        validation=validate_request(),
        job_key=key,
        endpoint=CHAT,
        completion_window="24h",
        metadata={"team": "search"},
        not_before=datetime.now(UTC),
        first_run=first_run,
    )


def batches_of(emu: EmulatorProcess, key: str) -> list[dict[str, Any]]:
    batches = list_all(emu, "/batches")
    return [b for b in batches if (b.get("metadata") or {}).get(JOB_KEY_METADATA) == key]


def uploads_of(emu: EmulatorProcess, key: str) -> list[dict[str, Any]]:
    return [f for f in list_all(emu, "/files") if f["filename"].startswith(key)]


def beats(runner: ActivityRunner) -> list[dict[str, Any]]:
    """Each heartbeat's details as Temporal would store them (JSON)."""
    return [SubmittedBatch.model_validate(d[0]).model_dump() for d in runner.heartbeats if d]


async def test_one_step_validates_uploads_and_creates_the_batch_on_that_upload(
    emu: EmulatorProcess, acts: BatchActivities, storage: LocalStorage, key: str
) -> None:
    write_input(storage, chat_file(3))
    runner = ActivityRunner(TemporalHeartbeats())

    done = await runner.run(acts.submit_batch, submit(key))

    assert done.summary is not None and done.uploaded is not None and done.batch is not None
    assert (done.summary.requests, done.refused) == (3, None)
    [upload] = uploads_of(emu, key)
    assert upload["filename"] == upload_filename(key, done.summary.sha256)
    [batch] = batches_of(emu, key)
    assert (batch["id"], batch["input_file_id"]) == (done.batch.id, done.uploaded.file_id)
    assert batch["metadata"]["team"] == "search"
    assert storage.path(input_index_location(OUTPUT, done.summary.sha256)).exists()
    marks = [beat["post_may_be_out"] for beat in beats(runner)]
    assert marks and all(marks), "every beat of the attempt carries the create's mark"
    sent_before_post = SubmittedBatch.model_validate(runner.heartbeats[0][0])
    assert sent_before_post.uploaded == done.uploaded, "the mark went out with the upload"


async def test_bad_input_fails_at_once_naming_the_line_and_makes_nothing(
    emu: EmulatorProcess, acts: BatchActivities, storage: LocalStorage, key: str
) -> None:
    good = chat_file(2).splitlines()[0]
    write_input(storage, good + b"\n" + good.replace(b'"custom_id"', b'"customid"') + b"\n")

    with pytest.raises(ApplicationError) as caught:
        await ActivityRunner(TemporalHeartbeats()).run(acts.submit_batch, submit(key))

    assert caught.value.type == FAILURE_INVALID_INPUT and caught.value.non_retryable
    assert "jobs/input.jsonl:2: field 'custom_id'" in caught.value.message
    assert not caught.value.details, "nothing validated: the workflow looks for no batch"
    assert uploads_of(emu, key) == [] and batches_of(emu, key) == []


async def test_a_retry_adopts_the_earlier_attempts_upload_and_batch(
    emu: EmulatorProcess, acts: BatchActivities, storage: LocalStorage, key: str
) -> None:
    write_input(storage, chat_file(2))
    first = await ActivityRunner(TemporalHeartbeats()).run(acts.submit_batch, submit(key))
    assert first.batch is not None
    # The worker died after the POST, before Temporal heard: its last beat is the mark's.
    lost = first.model_copy(update={"batch": None, "post_may_be_out": True})

    retried = await ActivityRunner(TemporalHeartbeats()).run(
        acts.submit_batch,
        submit(key),
        attempt=2,
        heartbeat_details=[lost.model_dump(mode="json")],
    )

    assert retried.batch is not None and retried.uploaded is not None
    assert (retried.batch.id, retried.batch.adopted) == (first.batch.id, True)
    assert retried.uploaded.adopted
    assert len(uploads_of(emu, key)) == 1 and len(batches_of(emu, key)) == 1


async def test_a_retry_after_a_post_that_may_be_out_never_creates_where_batches_cannot_be_listed(
    emu: EmulatorProcess, acts: BatchActivities, storage: LocalStorage, key: str
) -> None:
    write_input(storage, chat_file(2))
    emu.set_knobs(unsupported_routes=["list_batches"])
    done = await ActivityRunner(TemporalHeartbeats()).run(acts.submit_batch, submit(key))
    lost = done.model_copy(update={"batch": None, "post_may_be_out": True})

    with pytest.raises(ApplicationError) as caught:
        await ActivityRunner(TemporalHeartbeats()).run(
            acts.submit_batch,
            submit(key),
            attempt=2,
            heartbeat_details=[lost.model_dump(mode="json")],
        )

    error = caught.value
    assert error.type == FAILURE_CREATE_OUTCOME_UNKNOWN and error.non_retryable
    assert "starter.py attach" in error.message
    checkpoint = SubmittedBatch.model_validate(error.details[-1])
    assert checkpoint.uploaded is not None and lost.uploaded is not None
    assert checkpoint.uploaded.file_id == lost.uploaded.file_id, "the workflow learns the upload"
    emu.set_knobs(unsupported_routes=[])
    assert len(batches_of(emu, key)) == 1, "the retry sent no second POST"


async def test_a_retry_adopts_the_batch_an_earlier_attempt_heard_where_batches_cannot_be_listed(
    emu: EmulatorProcess, acts: BatchActivities, storage: LocalStorage, key: str
) -> None:
    write_input(storage, chat_file(2))
    emu.set_knobs(unsupported_routes=["list_batches"])
    handle = TemporalHeartbeats()
    done = await ActivityRunner(handle).run(acts.submit_batch, submit(key))
    assert done.batch is not None
    # The worker is lost right after the answer: its last beat at Temporal has the id.
    last = SubmittedBatch.model_validate(handle.sent[-1][0])
    assert last.post_may_be_out and last.created_batch_id == done.batch.id

    retried = await ActivityRunner(TemporalHeartbeats()).run(
        acts.submit_batch, submit(key), attempt=2, heartbeat_details=[last.model_dump(mode="json")]
    )

    assert retried.batch is not None
    assert (retried.batch.id, retried.batch.adopted) == (done.batch.id, True)
    emu.set_knobs(unsupported_routes=[])
    assert len(batches_of(emu, key)) == 1


async def test_a_worker_lost_before_its_post_retries_cleanly_where_batches_cannot_be_listed(
    emu: EmulatorProcess, acts: BatchActivities, storage: LocalStorage, key: str
) -> None:
    """Lost during the upload (a deploy's grace ending): no POST was out, none is feared."""
    write_input(storage, chat_file(2))
    emu.set_knobs(unsupported_routes=["list_batches"], file_processing_seconds=1.0)
    handle = TemporalHeartbeats()
    uploaded = await ActivityRunner(handle).run(acts.submit_batch, submit(key))
    assert uploaded.batch is None, "held before its create: the upload is pending"
    beats = [SubmittedBatch.model_validate(d[0]) for d in handle.sent]
    assert not any(b.post_may_be_out for b in beats), "no mark before a POST"
    emu.set_knobs(file_processing_seconds=0)
    await asyncio.sleep(1.5)  # processed by now
    checkpoint = uploaded.model_copy(
        update={"uploaded": uploaded.uploaded.model_copy(update={"ready": True})}  # type: ignore[union-attr]
    )

    retried = await ActivityRunner(TemporalHeartbeats()).run(
        acts.submit_batch,
        submit(key),
        attempt=2,
        heartbeat_details=[checkpoint.model_dump(mode="json")],
    )

    assert retried.batch is not None and not retried.batch.adopted
    emu.set_knobs(unsupported_routes=[])
    assert len(batches_of(emu, key)) == 1


async def test_a_create_refused_for_quota_is_handed_back_with_the_upload(
    emu: EmulatorProcess, acts: BatchActivities, storage: LocalStorage, key: str
) -> None:
    write_input(storage, chat_file(2))
    emu.set_knobs(enqueued_token_limit=1, enqueued_token_refusal="http_429")
    runner = ActivityRunner(TemporalHeartbeats())

    done = await runner.run(acts.submit_batch, submit(key))

    assert done.batch is None and done.refused is not None and done.uploaded is not None
    assert "enqueued tokens has surpassed" in done.refused.message
    assert [f["id"] for f in uploads_of(emu, key)] == [done.uploaded.file_id]
    assert beats(runner)[-1]["post_may_be_out"] is False, "the gateway made nothing"
    emu.set_knobs(enqueued_token_limit=None)
    assert batches_of(emu, key) == []


async def test_an_upload_the_gateway_has_not_processed_yet_is_handed_back_without_a_batch(
    emu: EmulatorProcess, acts: BatchActivities, storage: LocalStorage, key: str
) -> None:
    write_input(storage, chat_file(2))
    emu.set_knobs(file_processing_seconds=60.0)

    done = await ActivityRunner(TemporalHeartbeats()).run(acts.submit_batch, submit(key))

    assert done.uploaded is not None and not done.uploaded.ready
    assert done.batch is None and done.refused is None
    assert batches_of(emu, key) == [], "Azure refuses a batch on a pending file"


async def test_a_cancel_while_the_post_is_out_waits_for_its_answer_and_returns_its_batch(
    emu: EmulatorProcess,
    gateway: GatewayClient,
    acts: BatchActivities,
    storage: LocalStorage,
    key: str,
) -> None:
    write_input(storage, chat_file(2))
    handle = TemporalHeartbeats()
    runner = ActivityRunner(handle)
    emu.set_knobs(response_delay_seconds=1.0)
    task = asyncio.create_task(runner.run(acts.submit_batch, submit(key)))
    for _ in range(200):
        if handle.sent:
            break
        await asyncio.sleep(0.05)
    assert handle.sent, "the mark reached Temporal before the POST"
    assert SubmittedBatch.model_validate(handle.sent[0][0]).post_may_be_out
    runner.env.cancel()

    done = await task

    # The workflow, cancelling, cancels this batch by its id (a gateway that cannot
    # list could not find it by the job key), and its last step removes the index.
    assert done.batch is not None
    assert [b["id"] for b in batches_of(emu, key)] == [done.batch.id]
    answered = SubmittedBatch.model_validate(handle.sent[-1][0])
    assert answered.created_batch_id == done.batch.id, "its id at Temporal at once"
