"""Files the gateway has not processed yet, and creates whose answer never came.

Against the real emulator over HTTP. Time is skipped, not slept: a file stays
pending for an emulated hour until ``time_scale`` is raised so the hour passes
at once (this module's emulator is its own, so nothing else is hurried).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from activities.batch_activities import BatchActivities
from contracts.names import FAILURE_FILE_NOT_PROCESSED, FAILURE_INPUT_FILE_UNUSABLE
from contracts.steps import AwaitFileRequest, CreateBatchRequest, FileSnapshot
from devstack.emulator import EmulatorProcess
from gateway.client import GatewayClient
from gateway.errors import GatewayError, InputFileNotReadyError, RouteNotSupportedError
from tests.activities.helpers import CHAT, ActivityRunner, chat_file

HOUR = 3600.0
SKIP_AHEAD = {"time_scale": 1e8}


async def _upload(gateway: GatewayClient, tmp_path: Path, name: str = "in.jsonl") -> str:
    source = tmp_path / name
    source.write_bytes(chat_file(3))
    return (await gateway.upload_file(source, filename=name)).id


def _create_request(file_id: str, job_key: str) -> CreateBatchRequest:
    return CreateBatchRequest(
        input_file_id=file_id,
        endpoint=CHAT,
        completion_window="24h",
        metadata={},
        job_key=job_key,
        not_before=datetime.now(UTC),
    )


def _batch_ids(emu: EmulatorProcess) -> set[str]:
    with httpx.Client(base_url=emu.base_url, timeout=10.0) as http:
        return {b["id"] for b in http.get("/batches", params={"limit": 100}).json()["data"]}


# -- await_file_processed ---------------------------------------------------


async def test_await_file_processed_fails_benignly_while_pending_then_returns(
    emu: EmulatorProcess,
    gateway: GatewayClient,
    acts: BatchActivities,
    runner: ActivityRunner,
    tmp_path: Path,
) -> None:
    emu.set_knobs(file_processing_seconds=HOUR, dialect="azure")
    file_id = await _upload(gateway, tmp_path)
    request = AwaitFileRequest(file_id=file_id, poll_seconds=12.5)

    with pytest.raises(ApplicationError) as caught:
        await runner.run(acts.await_file_processed, request)

    error = caught.value
    assert error.type == FAILURE_FILE_NOT_PROCESSED
    assert not error.non_retryable
    assert error.category == ApplicationErrorCategory.BENIGN
    assert error.next_retry_delay == timedelta(seconds=12.5)
    assert file_id in error.message
    (details,) = error.details
    assert isinstance(details, FileSnapshot)
    assert (details.id, details.status) == (file_id, "pending")
    assert runner.heartbeats[-1] == (details,)

    emu.set_knobs(**SKIP_AHEAD)
    ready = await runner.run(acts.await_file_processed, request)
    assert (ready.id, ready.status, ready.bytes) == (file_id, "processed", len(chat_file(3)))


async def test_a_file_pending_past_the_validating_deadline_ends_with_its_status_and_id(
    emu: EmulatorProcess,
    gateway: GatewayClient,
    acts: BatchActivities,
    runner: ActivityRunner,
    tmp_path: Path,
) -> None:
    emu.set_knobs(file_processing_seconds=HOUR, dialect="azure")
    file_id = await _upload(gateway, tmp_path)
    within = AwaitFileRequest(file_id=file_id, poll_seconds=1, give_up_after_seconds=HOUR)
    with pytest.raises(ApplicationError) as waiting:
        await runner.run(acts.await_file_processed, within)
    assert waiting.value.type == FAILURE_FILE_NOT_PROCESSED, "within the deadline: still waits"

    # By the gateway's created_at the deadline (here 1 s) has passed.
    past = within.model_copy(update={"give_up_after_seconds": 1.0})
    await asyncio.sleep(1.5)
    with pytest.raises(ApplicationError) as caught:
        await runner.run(acts.await_file_processed, past)

    error = caught.value
    assert error.type == FAILURE_INPUT_FILE_UNUSABLE and error.non_retryable
    assert f"input file {file_id} as 'pending'" in error.message
    assert "validating deadline" in error.message and "deleted" in error.message


async def test_await_file_processed_fails_for_good_with_the_gateway_reason(
    emu: EmulatorProcess,
    gateway: GatewayClient,
    acts: BatchActivities,
    runner: ActivityRunner,
    tmp_path: Path,
) -> None:
    reason = "The input file contains a UTF-8 byte order mark."
    emu.set_knobs(file_processing_error=reason)
    file_id = await _upload(gateway, tmp_path)

    with pytest.raises(ApplicationError) as caught:
        await runner.run(
            acts.await_file_processed, AwaitFileRequest(file_id=file_id, poll_seconds=1)
        )

    error = caught.value
    assert error.type == FAILURE_INPUT_FILE_UNUSABLE
    assert error.non_retryable
    assert file_id in error.message and reason in error.message


async def test_await_file_processed_on_a_file_that_is_gone_is_final(
    gateway: GatewayClient, acts: BatchActivities, runner: ActivityRunner, tmp_path: Path
) -> None:
    file_id = await _upload(gateway, tmp_path)
    assert await gateway.delete_file(file_id)
    assert not await gateway.delete_file(file_id), "a second delete finds nothing"

    with pytest.raises(ApplicationError) as caught:
        await runner.run(
            acts.await_file_processed, AwaitFileRequest(file_id=file_id, poll_seconds=1)
        )

    assert caught.value.non_retryable
    assert file_id in caught.value.message


async def test_create_batch_on_a_pending_file_is_refused_retryably(
    emu: EmulatorProcess,
    gateway: GatewayClient,
    acts: BatchActivities,
    runner: ActivityRunner,
    tmp_path: Path,
) -> None:
    emu.set_knobs(file_processing_seconds=HOUR)
    file_id = await _upload(gateway, tmp_path)

    with pytest.raises(ApplicationError) as caught:
        await runner.run(acts.create_batch, _create_request(file_id, "job-pending-file"))

    assert caught.value.type == InputFileNotReadyError.__name__
    assert not caught.value.non_retryable
    assert "'pending' state" in caught.value.message

    emu.set_knobs(**SKIP_AHEAD)
    created = await runner.run(acts.create_batch, _create_request(file_id, "job-pending-file"))
    assert created.input_file_id == file_id


async def test_create_batch_on_a_file_pending_past_the_validating_deadline_gives_up(
    emu: EmulatorProcess,
    gateway: GatewayClient,
    acts: BatchActivities,
    runner: ActivityRunner,
    tmp_path: Path,
) -> None:
    emu.set_knobs(file_processing_seconds=HOUR, dialect="azure")
    file_id = await _upload(gateway, tmp_path)
    await asyncio.sleep(1.5)
    request = _create_request(file_id, "job-pending-too-long").model_copy(
        update={"give_up_pending_after_seconds": 1.0}
    )

    with pytest.raises(ApplicationError) as caught:
        await runner.run(acts.create_batch, request)

    assert caught.value.type == FAILURE_INPUT_FILE_UNUSABLE and caught.value.non_retryable
    assert f"input file {file_id} as 'pending'" in caught.value.message
    assert "validating deadline" in caught.value.message


# -- ambiguous creates, seen by the gateway client --------------------------


@pytest.mark.parametrize("answer", ["drop", "502"])
async def test_a_create_that_made_its_batch_but_did_not_answer_is_outcome_unknown(
    emu: EmulatorProcess, gateway: GatewayClient, tmp_path: Path, answer: str
) -> None:
    file_id = await _upload(gateway, tmp_path)
    before = _batch_ids(emu)
    emu.set_knobs(ambiguous_creates=1, ambiguous_create_answer=answer)

    with pytest.raises(GatewayError) as caught:
        await gateway.create_batch(input_file_id=file_id, endpoint=CHAT)

    assert caught.value.outcome_unknown
    assert caught.value.retryable
    assert len(_batch_ids(emu) - before) == 1, "the gateway holds the batch nobody heard of"


async def test_a_create_refused_before_acting_is_not_outcome_unknown(
    gateway: GatewayClient,
) -> None:
    with pytest.raises(GatewayError) as caught:
        await gateway.create_batch(input_file_id="file-nope", endpoint=CHAT)

    assert caught.value.status_code == 404
    assert not caught.value.outcome_unknown


async def test_delete_file_through_a_gateway_without_the_route_says_so(
    emu: EmulatorProcess, gateway: GatewayClient, tmp_path: Path
) -> None:
    file_id = await _upload(gateway, tmp_path)
    emu.set_knobs(unsupported_routes=["delete_file"])

    with pytest.raises(RouteNotSupportedError):
        await gateway.delete_file(file_id)

    assert (await gateway.get_file(file_id)).id == file_id
