"""A create whose earlier attempt's POST may be out unanswered, and creates refused for quota.

Against the real emulator over HTTP. A retried attempt is handed the heartbeat
details of the attempt before, as Temporal hands them (decoded as plain JSON).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from temporalio.exceptions import ApplicationError

from activities.batch_activities import BatchActivities, _quota_refusal
from activities.create_mark import CreateMark
from contracts.names import (
    FAILURE_CREATE_OUTCOME_UNKNOWN,
    FAILURE_QUOTA_REFUSED,
    JOB_KEY_METADATA,
    QUOTA_REFUSAL_CODE,
)
from contracts.steps import CreateBatchRequest
from devstack.emulator import EmulatorProcess
from gateway.client import GatewayClient
from gateway.errors import GatewayError, RejectedByGatewayError, RetryableGatewayError
from tests.activities.helpers import CHAT, ActivityRunner, chat_file

POST_MAY_BE_OUT = [{"post_may_be_out": True}]


async def _upload(gateway: GatewayClient, tmp_path: Path, requests: int = 3) -> str:
    source = tmp_path / f"in-{requests}.jsonl"
    source.write_bytes(chat_file(requests))
    return (await gateway.upload_file(source, filename=source.name)).id


def _request(file_id: str, job_key: str, *, fresh: bool = True) -> CreateBatchRequest:
    return CreateBatchRequest(
        input_file_id=file_id,
        endpoint=CHAT,
        completion_window="24h",
        metadata={},
        job_key=job_key,
        not_before=datetime.now(UTC),
        fresh_input=fresh,
    )


def _batches_of(emu: EmulatorProcess, job_key: str) -> list[dict[str, object]]:
    with httpx.Client(base_url=emu.base_url, timeout=10.0) as http:
        listed = http.get("/batches", params={"limit": 100}).json()["data"]
    return [b for b in listed if (b.get("metadata") or {}).get(JOB_KEY_METADATA) == job_key]


def _marks(runner: ActivityRunner) -> list[bool]:
    return [d[0].post_may_be_out for d in runner.heartbeats if d and isinstance(d[0], CreateMark)]


async def test_a_create_marks_its_post_as_possibly_out_before_sending_it(
    emu: EmulatorProcess,
    gateway: GatewayClient,
    acts: BatchActivities,
    runner: ActivityRunner,
    tmp_path: Path,
) -> None:
    file_id = await _upload(gateway, tmp_path)

    made = await runner.run(acts.create_batch, _request(file_id, "job-marked"))

    assert [b["id"] for b in _batches_of(emu, "job-marked")] == [made.id]
    assert _marks(runner) and _marks(runner)[0], "the mark recorded before the POST"
    assert all(_marks(runner)), "and kept once the POST was out"


async def test_a_retry_after_a_post_lost_in_flight_never_creates_on_a_gateway_that_cannot_list(
    emu: EmulatorProcess,
    gateway: GatewayClient,
    acts: BatchActivities,
    runner: ActivityRunner,
    tmp_path: Path,
) -> None:
    file_id = await _upload(gateway, tmp_path)
    emu.set_knobs(unsupported_routes=["list_batches"])

    with pytest.raises(ApplicationError) as caught:
        await runner.run(
            acts.create_batch,
            _request(file_id, "job-lost-post"),
            attempt=2,
            heartbeat_details=POST_MAY_BE_OUT,
        )

    error = caught.value
    assert error.type == FAILURE_CREATE_OUTCOME_UNKNOWN
    assert error.non_retryable
    assert f"{JOB_KEY_METADATA}=job-lost-post" in error.message
    assert "POST /batches" in error.message and "starter.py attach" in error.message
    emu.set_knobs(unsupported_routes=[])
    assert _batches_of(emu, "job-lost-post") == [], "the retry sent no POST"


async def test_a_retry_after_a_post_lost_in_flight_adopts_its_batch_where_the_gateway_lists(
    emu: EmulatorProcess,
    gateway: GatewayClient,
    acts: BatchActivities,
    runner: ActivityRunner,
    tmp_path: Path,
) -> None:
    file_id = await _upload(gateway, tmp_path)
    lost = await gateway.create_batch(
        input_file_id=file_id, endpoint=CHAT, metadata={JOB_KEY_METADATA: "job-listed"}
    )

    retried = await runner.run(
        acts.create_batch,
        _request(file_id, "job-listed"),
        attempt=2,
        heartbeat_details=POST_MAY_BE_OUT,
    )

    assert (retried.id, retried.adopted) == (lost.id, True)
    assert len(_batches_of(emu, "job-listed")) == 1


async def test_a_retry_after_a_definite_refusal_creates_on_a_gateway_that_cannot_list(
    emu: EmulatorProcess,
    gateway: GatewayClient,
    acts: BatchActivities,
    runner: ActivityRunner,
    tmp_path: Path,
) -> None:
    file_id = await _upload(gateway, tmp_path)
    emu.set_knobs(
        unsupported_routes=["list_batches"],
        enqueued_token_limit=1,
        enqueued_token_refusal="http_429",
    )
    with pytest.raises(ApplicationError):
        await runner.run(acts.create_batch, _request(file_id, "job-refused-then-made"))
    assert _marks(runner)[-1] is False, "the gateway answered that it made nothing"

    emu.set_knobs(enqueued_token_limit=None)
    made = await runner.run(
        acts.create_batch,
        _request(file_id, "job-refused-then-made"),
        attempt=2,
        heartbeat_details=[{"post_may_be_out": False}],
    )

    emu.set_knobs(unsupported_routes=[])
    assert [b["id"] for b in _batches_of(emu, "job-refused-then-made")] == [made.id]


@pytest.mark.parametrize("refusal", ["failed_batch", "http_429"])
async def test_a_create_refused_for_quota_says_so_and_a_later_create_is_not_the_refused_batch(
    emu: EmulatorProcess,
    gateway: GatewayClient,
    acts: BatchActivities,
    runner: ActivityRunner,
    tmp_path: Path,
    refusal: str,
) -> None:
    file_id = await _upload(gateway, tmp_path)
    job_key = f"job-quota-{refusal}"
    emu.set_knobs(enqueued_token_limit=1, enqueued_token_refusal=refusal)

    with pytest.raises(ApplicationError) as caught:
        await runner.run(acts.create_batch, _request(file_id, job_key))

    error = caught.value
    assert error.type == FAILURE_QUOTA_REFUSED
    assert error.non_retryable, "the workflow decides: wait, or (a shard) fail for its parent"
    assert f"[{QUOTA_REFUSAL_CODE}]" in error.message
    assert "enqueued tokens has surpassed" in str(error.details[0])

    emu.set_knobs(enqueued_token_limit=None)
    made = await runner.run(acts.create_batch, _request(file_id, job_key, fresh=False))
    # A new batch, not the refused one (failed): how far it got by the answer is the load's.
    assert made.status in ("validating", "in_progress") and not made.adopted


@pytest.mark.parametrize(
    ("error", "refusal"),
    [
        # Azure's fail-fast as Microsoft's samples see it: matched by its words, whatever code.
        (
            RejectedByGatewayError(
                "create batch: gateway answered 400: The number of enqueued tokens has "
                "surpassed the configured limit of 240 for the deployment 'gpt-4o-mini'.",
                status_code=400,
                code="invalid_request_error",
            ),
            True,
        ),
        (RejectedByGatewayError("x", status_code=400, code="token_limit_exceeded"), True),
        (
            RetryableGatewayError(
                "create batch: gateway answered 429: Enqueued token limit reached for gpt-4o. "
                "Limit: 90,000 enqueued tokens.",
                status_code=429,
            ),
            True,
        ),
        (
            RetryableGatewayError(
                "create batch: gateway answered 429: Rate limit reached on tokens per min",
                status_code=429,
                code="rate_limit_exceeded",
            ),
            False,
        ),
        # A 5xx may have made the batch: never taken as a refusal.
        (
            RetryableGatewayError(
                "create batch: gateway answered 503: enqueued tokens", status_code=503
            ),
            False,
        ),
    ],
)
def test_a_quota_refusal_is_known_by_its_code_or_its_words(
    error: GatewayError, refusal: bool
) -> None:
    assert _quota_refusal(error) is refusal


async def test_a_create_whose_answer_timed_out_is_looked_for_until_its_batch_appears(
    emu: EmulatorProcess,
    gateway: GatewayClient,
    acts: BatchActivities,
    runner: ActivityRunner,
    tmp_path: Path,
) -> None:
    file_id = await _upload(gateway, tmp_path)
    # The gateway gives up (504) while the provider still makes the batch, 3 s later.
    emu.set_knobs(late_creates=1, late_create_seconds=3.0)

    with pytest.raises(ApplicationError) as caught:
        await runner.run(acts.create_batch, _request(file_id, "job-late"))
    assert not caught.value.non_retryable and "504" in caught.value.message
    mark = runner.heartbeats[-1][0]
    assert isinstance(mark, CreateMark) and mark.post_may_be_out and mark.answer_timed_out
    assert _batches_of(emu, "job-late") == [], "not there yet when the retry starts"

    retried = await runner.run(
        acts.create_batch,
        _request(file_id, "job-late"),
        attempt=2,
        heartbeat_details=[mark.model_dump(mode="json")],
    )

    assert retried.adopted, "found by looking again, not created again"
    assert [b["id"] for b in _batches_of(emu, "job-late")] == [retried.id]


async def test_a_gateway_that_drops_the_job_key_is_treated_as_one_that_cannot_list(
    emu: EmulatorProcess,
    gateway: GatewayClient,
    acts: BatchActivities,
    runner: ActivityRunner,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    file_id = await _upload(gateway, tmp_path)
    emu.set_knobs(drop_metadata=True)

    made = await runner.run(acts.create_batch, _request(file_id, "job-no-metadata"))
    assert made.id
    assert any(
        "without its metadata temporal_job_key" in r.getMessage() and emu.base_url in r.getMessage()
        for r in caplog.records
    ), "a warning naming the gateway"

    with pytest.raises(ApplicationError) as caught:
        await runner.run(
            acts.create_batch,
            _request(file_id, "job-no-metadata-2"),
            attempt=2,
            heartbeat_details=POST_MAY_BE_OUT,
        )
    assert caught.value.type == FAILURE_CREATE_OUTCOME_UNKNOWN, "never a second, unfindable batch"
