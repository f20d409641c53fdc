"""A create whose answer never came, and attaching to a batch made outside the job.

Against the real emulator over HTTP: its ambiguous_creates knob makes the batch and
then drops the connection (or answers 502), as a gateway timing out after Azure
acted would.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from temporalio.exceptions import ApplicationError

from activities.batch_activities import BatchActivities, upload_filename
from contracts.names import (
    FAILURE_BATCH_NOT_FOR_INPUT,
    FAILURE_CREATE_OUTCOME_UNKNOWN,
    JOB_KEY_METADATA,
)
from contracts.steps import AttachBatchRequest, CreateBatchRequest
from devstack.emulator import EmulatorProcess
from gateway.client import GatewayClient
from tests.activities.helpers import CHAT, ActivityRunner, chat_file


async def _upload(gateway: GatewayClient, tmp_path: Path, requests: int = 3) -> tuple[str, int]:
    source = tmp_path / f"in-{requests}.jsonl"
    source.write_bytes(chat_file(requests))
    uploaded = await gateway.upload_file(source, filename=source.name)
    return uploaded.id, source.stat().st_size


def _create_request(file_id: str, job_key: str) -> CreateBatchRequest:
    return CreateBatchRequest(
        input_file_id=file_id,
        endpoint=CHAT,
        completion_window="24h",
        metadata={},
        job_key=job_key,
        not_before=datetime.now(UTC),
    )


def _batches_of(emu: EmulatorProcess, job_key: str) -> list[dict[str, object]]:
    with httpx.Client(base_url=emu.base_url, timeout=10.0) as http:
        emu_batches = http.get("/batches", params={"limit": 100}).json()["data"]
    return [b for b in emu_batches if (b.get("metadata") or {}).get(JOB_KEY_METADATA) == job_key]


@pytest.mark.parametrize("answer", ["drop", "502"])
async def test_an_unanswered_create_through_a_gateway_that_cannot_list_is_not_repeated(
    emu: EmulatorProcess,
    gateway: GatewayClient,
    acts: BatchActivities,
    runner: ActivityRunner,
    tmp_path: Path,
    answer: str,
) -> None:
    file_id, _ = await _upload(gateway, tmp_path)
    job_key = f"job-ambiguous-{answer}"
    emu.set_knobs(
        ambiguous_creates=1, ambiguous_create_answer=answer, unsupported_routes=["list_batches"]
    )

    with pytest.raises(ApplicationError) as caught:
        await runner.run(acts.create_batch, _create_request(file_id, job_key))

    error = caught.value
    assert error.type == FAILURE_CREATE_OUTCOME_UNKNOWN
    assert error.non_retryable, "a retry could not see the batch, and would make a second"
    assert "\n" not in error.message
    assert f"{JOB_KEY_METADATA}={job_key}" in error.message
    assert "attach" in error.message
    emu.set_knobs(unsupported_routes=[])
    [made] = _batches_of(emu, job_key)
    assert made["status"] != "cancelled", "the batch is left for the user to attach to"


async def test_an_unanswered_create_through_a_gateway_that_lists_is_adopted_on_retry(
    emu: EmulatorProcess,
    gateway: GatewayClient,
    acts: BatchActivities,
    runner: ActivityRunner,
    tmp_path: Path,
) -> None:
    file_id, _ = await _upload(gateway, tmp_path)
    job_key = "job-ambiguous-listed"
    request = _create_request(file_id, job_key)
    emu.set_knobs(ambiguous_creates=1)

    with pytest.raises(ApplicationError) as caught:
        await runner.run(acts.create_batch, request)
    assert not caught.value.non_retryable, "Temporal retries it"

    retried = await runner.run(acts.create_batch, request, attempt=2)

    assert retried.adopted
    [made] = _batches_of(emu, job_key)
    assert retried.id == made["id"]


async def test_attach_reads_a_batch_made_by_hand_for_the_same_input(
    gateway: GatewayClient, acts: BatchActivities, runner: ActivityRunner, tmp_path: Path
) -> None:
    file_id, size = await _upload(gateway, tmp_path)
    by_hand = await gateway.create_batch(input_file_id=file_id, endpoint=CHAT)

    attached = await runner.run(
        acts.attach_batch,
        AttachBatchRequest(
            batch_id=by_hand.id, input_path="in.jsonl", input_bytes=size, endpoint=CHAT
        ),
    )

    assert (attached.id, attached.input_file_id, attached.adopted) == (by_hand.id, file_id, True)


@pytest.mark.parametrize(
    ("batch_id", "endpoint", "other_input", "named"),
    [
        ("batch_does_not_exist", CHAT, False, "no such batch"),
        (None, "/v1/embeddings", False, "endpoint /v1/chat/completions"),
        (None, CHAT, True, "bytes"),
    ],
)
async def test_attach_refuses_a_batch_that_does_not_run_this_input(
    gateway: GatewayClient,
    acts: BatchActivities,
    runner: ActivityRunner,
    tmp_path: Path,
    batch_id: str | None,
    endpoint: str,
    other_input: bool,
    named: str,
) -> None:
    file_id, size = await _upload(gateway, tmp_path)
    _, other_size = await _upload(gateway, tmp_path, requests=7)
    by_hand = await gateway.create_batch(input_file_id=file_id, endpoint=CHAT)
    target = batch_id or by_hand.id

    with pytest.raises(ApplicationError) as caught:
        await runner.run(
            acts.attach_batch,
            AttachBatchRequest(
                batch_id=target,
                input_path="in.jsonl",
                input_bytes=other_size if other_input else size,
                endpoint=endpoint,
            ),
        )

    error = caught.value
    assert error.type == FAILURE_BATCH_NOT_FOR_INPUT
    assert error.non_retryable
    assert f"cannot attach in.jsonl to batch {target}" in error.message
    assert named in error.message


async def test_attach_refuses_a_batch_that_is_not_the_jobs_unless_the_worker_allows_it(
    gateway: GatewayClient, acts: BatchActivities, runner: ActivityRunner, tmp_path: Path
) -> None:
    """Another team's batch on the same endpoint and count: refused, and nothing about it said."""
    file_id, size = await _upload(gateway, tmp_path)
    theirs = await gateway.create_batch(input_file_id=file_id, endpoint=CHAT)
    request = AttachBatchRequest(
        batch_id=theirs.id,
        input_path="in.jsonl",
        input_bytes=size + 1,
        endpoint=CHAT,
        job_key="job-mine",
        input_sha256="ab" * 32,
    )

    with pytest.raises(ApplicationError) as caught:
        await runner.run(acts.attach_batch, request)
    assert caught.value.type == FAILURE_BATCH_NOT_FOR_INPUT and caught.value.non_retryable
    assert "it is not this job's" in caught.value.message
    assert "bytes" not in caught.value.message, "the other file's size is not told"

    lenient = BatchActivities(acts.client, acts.storage, attach_any_batch=True)
    with pytest.raises(ApplicationError, match="bytes"):
        await runner.run(lenient.attach_batch, request)  # allowed, then compared


async def test_attach_takes_a_batch_tagged_with_the_job_key_or_uploaded_from_its_input(
    gateway: GatewayClient, acts: BatchActivities, runner: ActivityRunner, tmp_path: Path
) -> None:
    sha256 = "cd" * 32
    source = tmp_path / "named.jsonl"
    source.write_bytes(chat_file(3))
    named = await gateway.upload_file(source, filename=upload_filename("job-before", sha256))
    size = source.stat().st_size
    by_upload = await gateway.create_batch(input_file_id=named.id, endpoint=CHAT)
    file_id, _ = await _upload(gateway, tmp_path)
    tagged = await gateway.create_batch(
        input_file_id=file_id, endpoint=CHAT, metadata={JOB_KEY_METADATA: "job-mine"}
    )

    for batch, key in ((by_upload, "job-after"), (tagged, "job-mine")):
        attached = await runner.run(
            acts.attach_batch,
            AttachBatchRequest(
                batch_id=batch.id,
                input_path="in.jsonl",
                input_bytes=size if batch is by_upload else (await gateway.get_file(file_id)).bytes,
                endpoint=CHAT,
                job_key=key,
                input_sha256=sha256,
            ),
        )
        assert attached.id == batch.id
