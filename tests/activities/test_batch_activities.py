"""The activities under Temporal's ActivityEnvironment, against the real emulator over HTTP."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from activities.batch_activities import BatchActivities, upload_filename
from contracts.job import InputLimits
from contracts.names import (
    FAILURE_BATCH_NOT_CHANGED,
    FAILURE_INVALID_INPUT,
    FAILURE_INVALID_LOCATION,
    JOB_KEY_METADATA,
)
from contracts.steps import (
    AwaitChangeRequest,
    BatchSnapshot,
    CancelBatchRequest,
    CollectResultsRequest,
    CreateBatchRequest,
    InputSummary,
    UploadedInput,
    UploadInputRequest,
    ValidateInputRequest,
)
from devstack.emulator import EmulatorProcess
from emulator.backends import injected_failure
from gateway.client import GatewayClient
from gateway.settings import GatewaySettings
from storage import LocalStorage
from tests.activities.conftest import settings_for
from tests.activities.helpers import CHAT, ActivityRunner, chat_file, read_jsonl

INPUT = "jobs/input.jsonl"
TERMINAL = {"completed", "failed", "expired", "cancelled"}


def list_all(emulator: EmulatorProcess, route: str) -> list[dict[str, Any]]:
    """Every object at /files or /batches, read straight from the emulator."""
    with httpx.Client(base_url=emulator.base_url, timeout=10.0) as http:
        found: list[dict[str, Any]] = []
        params: dict[str, Any] = {"limit": 100}
        while True:
            page = http.get(route, params=params).raise_for_status().json()
            found += page["data"]
            if not page["has_more"]:
                return found
            params["after"] = page["data"][-1]["id"]


def write_input(storage: LocalStorage, data: bytes, location: str = INPUT) -> None:
    path = storage.path(location)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def validate_request(**overrides: Any) -> ValidateInputRequest:
    fields: dict[str, Any] = {
        "input_path": INPUT,
        "endpoint": CHAT,
        "limits": InputLimits(),
        "output_path": "jobs/input.output.jsonl",
        "errors_path": "jobs/input.errors.jsonl",
        **overrides,
    }
    return ValidateInputRequest(**fields)


class Job:
    """The steps of one job, run activity by activity as the workflow would."""

    def __init__(
        self, runner: ActivityRunner, acts: BatchActivities, storage: LocalStorage, key: str
    ) -> None:
        self.runner = runner
        self.acts = acts
        self.storage = storage
        self.key = key
        self.started = datetime.now(UTC)

    async def validate(self, data: bytes) -> InputSummary:
        write_input(self.storage, data)
        return await self.runner.run(self.acts.validate_input, validate_request())

    async def upload(self, summary: InputSummary, attempt: int = 1) -> UploadedInput:
        request = UploadInputRequest(
            input_path=INPUT, job_key=self.key, sha256=summary.sha256, bytes=summary.bytes
        )
        return await self.runner.run(self.acts.upload_input, request, attempt=attempt)

    def create_request(
        self, file_id: str, *, not_before: datetime | None = None
    ) -> CreateBatchRequest:
        return CreateBatchRequest(
            input_file_id=file_id,
            endpoint=CHAT,
            completion_window="24h",
            metadata={"team": "research"},
            job_key=self.key,
            not_before=not_before or self.started,
        )

    async def create(self, file_id: str) -> BatchSnapshot:
        return await self.runner.run(self.acts.create_batch, self.create_request(file_id))

    async def submit(self, data: bytes) -> BatchSnapshot:
        uploaded = await self.upload(await self.validate(data))
        return await self.create(uploaded.file_id)

    async def wait(self, batch: BatchSnapshot, within: float = 20.0) -> BatchSnapshot:
        """Polls as Temporal's retries of await_status_change would, until terminal."""
        deadline = time.monotonic() + within
        while batch.status not in TERMINAL:
            request = AwaitChangeRequest(
                batch_id=batch.id, known_status=batch.status, poll_seconds=0.02
            )
            try:
                batch = await self.runner.run(self.acts.await_status_change, request)
            except ApplicationError as exc:
                assert exc.type == FAILURE_BATCH_NOT_CHANGED, exc
                assert time.monotonic() < deadline, f"batch {batch.id} still {batch.status}"
                await asyncio.sleep(0.02)
        return batch

    def cancel_request(self, batch_id: str | None) -> CancelBatchRequest:
        return CancelBatchRequest(batch_id=batch_id, job_key=self.key, not_before=self.started)


@pytest.fixture
def job(
    request: pytest.FixtureRequest,
    runner: ActivityRunner,
    acts: BatchActivities,
    storage: LocalStorage,
) -> Job:
    return Job(runner, acts, storage, key=f"job-{request.node.name}-{time.time_ns()}")


def fresh_job(
    emulator: EmulatorProcess, runner: ActivityRunner, storage: LocalStorage, key: str
) -> tuple[Job, GatewayClient]:
    client = GatewayClient(settings_for(emulator))
    return Job(runner, BatchActivities(client, storage), storage, key), client


# -- validate_input ---------------------------------------------------------


@pytest.mark.parametrize(
    "paths",
    [
        {"output_path": "../x"},
        {"errors_path": "jobs/../../x.jsonl"},
        {"output_path": "/etc/x.jsonl"},
        {"errors_path": "file:///tmp/elsewhere/x.jsonl"},
    ],
)
async def test_validate_input_refuses_results_outside_the_data_dir(
    fresh_emu: EmulatorProcess, runner: ActivityRunner, storage: LocalStorage, paths: dict[str, str]
) -> None:
    job, client = fresh_job(fresh_emu, runner, storage, "job-escape")
    async with client:
        write_input(storage, chat_file(3))
        with pytest.raises(ApplicationError) as caught:
            await runner.run(job.acts.validate_input, validate_request(**paths))
    error = caught.value
    assert error.type == FAILURE_INVALID_LOCATION
    assert error.non_retryable
    assert next(iter(paths.values())) in error.message
    assert list_all(fresh_emu, "/files") == []
    assert list_all(fresh_emu, "/batches") == []
    assert not (storage.root.parent / "x").exists()


async def test_validate_input_summarises_a_good_file(job: Job) -> None:
    data = chat_file(5)
    summary = await job.validate(data)
    assert (summary.requests, summary.bytes, summary.model) == (5, len(data), "gpt-4o-mini")


async def test_validate_input_lists_the_problems_non_retryable(job: Job) -> None:
    data = chat_file(3).replace(b'"method": "POST"', b'"method": "GET"', 1)
    with pytest.raises(ApplicationError) as caught:
        await job.validate(data)
    assert caught.value.type == FAILURE_INVALID_INPUT
    assert caught.value.non_retryable
    assert f"{INPUT}:1: custom_id='req-0' field 'method'" in caught.value.message


async def test_validate_input_missing_input_is_non_retryable(
    runner: ActivityRunner, acts: BatchActivities
) -> None:
    with pytest.raises(ApplicationError) as caught:
        await runner.run(acts.validate_input, validate_request(input_path="jobs/absent.jsonl"))
    assert caught.value.non_retryable
    assert caught.value.type == FAILURE_INVALID_LOCATION
    assert "absent.jsonl" in caught.value.message


# -- upload_input -----------------------------------------------------------


async def test_upload_twice_with_one_job_key_adopts_the_first(
    fresh_emu: EmulatorProcess, runner: ActivityRunner, storage: LocalStorage
) -> None:
    job, client = fresh_job(fresh_emu, runner, storage, "tenant/job:42")
    async with client:
        summary = await job.validate(chat_file(5))
        first = await job.upload(summary)
        second = await job.upload(summary, attempt=2)

    assert first.adopted is False
    assert second.adopted is True
    assert second.file_id == first.file_id
    assert first.bytes == second.bytes == summary.bytes
    files = list_all(fresh_emu, "/files")
    assert [f["id"] for f in files] == [first.file_id]
    assert files[0]["purpose"] == "batch"
    assert files[0]["filename"] == upload_filename("tenant/job:42", summary.sha256)
    assert files[0]["filename"].startswith("tenant_job_42.")
    assert files[0]["bytes"] == summary.bytes


async def test_upload_does_not_adopt_a_different_input_under_the_same_job_key(
    job: Job, gateway: GatewayClient
) -> None:
    """A reused workflow id (a daily job) with new content of the same size uploads anew."""
    first = await job.upload(await job.validate(chat_file(5, prefix="day1")))
    changed = await job.validate(chat_file(5, prefix="day2"))
    second = await job.upload(changed, attempt=2)

    assert second.adopted is False
    assert second.file_id != first.file_id
    target = job.storage.root / "download.jsonl"
    await gateway.download_file(second.file_id, target)
    assert target.read_bytes() == chat_file(5, prefix="day2")


async def test_upload_refuses_an_input_changed_since_validation(job: Job) -> None:
    summary = await job.validate(chat_file(5, prefix="aaaa"))
    write_input(job.storage, chat_file(5, prefix="bbbb"))  # same size, other content
    with pytest.raises(ApplicationError) as caught:
        await job.upload(summary)
    assert caught.value.type == "InputChanged"
    assert caught.value.non_retryable


# -- create_batch -----------------------------------------------------------


async def test_create_twice_with_one_job_key_adopts_the_first(
    fresh_emu: EmulatorProcess, runner: ActivityRunner, storage: LocalStorage
) -> None:
    job, client = fresh_job(fresh_emu, runner, storage, "job-create-twice")
    async with client:
        uploaded = await job.upload(await job.validate(chat_file(3)))
        first = await job.create(uploaded.file_id)
        second = await job.create(uploaded.file_id)

    assert first.adopted is False
    assert second.adopted is True
    assert second.id == first.id
    assert first.input_file_id == uploaded.file_id
    batches = list_all(fresh_emu, "/batches")
    assert [b["id"] for b in batches] == [first.id]
    assert batches[0]["metadata"] == {"team": "research", JOB_KEY_METADATA: job.key}


async def test_create_ignores_a_batch_older_than_the_job(job: Job, gateway: GatewayClient) -> None:
    """A batch tagged with this key by an earlier run (reused workflow id) is not this run's."""
    uploaded = await job.upload(await job.validate(chat_file(3)))
    earlier = await job.create(uploaded.file_id)

    later_run = job.create_request(uploaded.file_id, not_before=job.started + timedelta(hours=1))
    created = await job.runner.run(job.acts.create_batch, later_run)

    assert created.adopted is False
    assert created.id != earlier.id
    tagged = [
        b.id async for b in gateway.iter_batches() if b.metadata.get(JOB_KEY_METADATA) == job.key
    ]
    assert sorted(tagged) == sorted([earlier.id, created.id])


async def test_two_batches_of_one_job_keep_the_oldest_and_cancel_the_other(
    job: Job, gateway: GatewayClient, emu: EmulatorProcess
) -> None:
    """Two attempts alive at once (one declared dead but still running) both created."""
    emu.set_knobs(force_outcome="stuck_validating")
    uploaded = await job.upload(await job.validate(chat_file(3)))
    tag = {JOB_KEY_METADATA: job.key}
    made = [
        await gateway.create_batch(
            input_file_id=uploaded.file_id, endpoint="/v1/chat/completions", metadata=tag
        )
        for _ in range(2)
    ]
    keeper = min(made, key=lambda b: (b.created_at or 0, b.id))
    duplicate = next(b for b in made if b.id != keeper.id)

    adopted = await job.runner.run(job.acts.create_batch, job.create_request(uploaded.file_id))

    assert adopted.adopted is True
    assert adopted.id == keeper.id
    assert (await gateway.get_batch(duplicate.id)).status.value in ("cancelling", "cancelled")
    assert (await gateway.get_batch(keeper.id)).status.value == "validating"


# -- await_status_change ----------------------------------------------------


async def test_await_status_change_fails_benignly_until_the_status_moves(
    job: Job, emu: EmulatorProcess
) -> None:
    emu.set_knobs(force_outcome="stuck_validating")
    batch = await job.submit(chat_file(4))
    assert batch.status == "validating"
    request = AwaitChangeRequest(batch_id=batch.id, known_status="validating", poll_seconds=45.5)
    job.runner.heartbeats.clear()

    with pytest.raises(ApplicationError) as caught:
        await job.runner.run(job.acts.await_status_change, request)

    error = caught.value
    assert error.type == FAILURE_BATCH_NOT_CHANGED
    assert not error.non_retryable
    assert error.next_retry_delay == timedelta(seconds=45.5)
    assert error.category == ApplicationErrorCategory.BENIGN
    assert batch.id in error.message
    (details,) = error.details
    assert isinstance(details, BatchSnapshot)
    assert (details.id, details.status) == (batch.id, "validating")
    # Liveness beats carry nothing; the last one carries the poll's batch for describe().
    assert job.runner.heartbeats[-1] == (details,), "the poll's batch is heartbeated"

    emu.force(batch.id, "none")
    changed = await job.wait(batch)
    assert changed.id == batch.id
    assert changed.status == "completed"
    assert changed.counts is not None
    assert changed.counts.total == 4


async def test_await_status_change_returns_at_once_on_a_terminal_batch(job: Job) -> None:
    done = await job.wait(await job.submit(chat_file(2)))
    request = AwaitChangeRequest(batch_id=done.id, known_status=done.status, poll_seconds=60)
    again = await job.runner.run(job.acts.await_status_change, request)
    assert again.status == "completed"
    assert again.output_file_id == done.output_file_id


# -- gateway failures -------------------------------------------------------


async def test_rate_limited_call_retries_after_the_gateways_retry_after(
    job: Job, emu: EmulatorProcess
) -> None:
    batch = await job.submit(chat_file(2))
    emu.set_knobs(error_rate=1.0, error_statuses=[429], retry_after_seconds=7)

    poll = AwaitChangeRequest(batch_id=batch.id, known_status=batch.status, poll_seconds=60)
    with pytest.raises(ApplicationError) as polled:
        await job.runner.run(job.acts.await_status_change, poll)
    with pytest.raises(ApplicationError) as created:
        await job.runner.run(job.acts.create_batch, job.create_request("file-x"))

    for error in (polled.value, created.value):
        assert error.type == "RetryableGatewayError"
        assert not error.non_retryable
        assert error.next_retry_delay == timedelta(seconds=7)
        assert "429" in error.message


async def test_server_error_without_retry_after_leaves_the_delay_to_the_retry_policy(
    job: Job, emu: EmulatorProcess
) -> None:
    emu.set_knobs(error_rate=1.0, error_statuses=[500])
    with pytest.raises(ApplicationError) as caught:
        await job.runner.run(job.acts.create_batch, job.create_request("file-x"))
    assert caught.value.type == "RetryableGatewayError"
    assert not caught.value.non_retryable
    assert caught.value.next_retry_delay is None


async def test_wrong_key_is_non_retryable_and_never_shown(
    emu: EmulatorProcess, runner: ActivityRunner, storage: LocalStorage
) -> None:
    right, wrong = "right-key-5f1c9e0a77", "wrong-key-SECRET-d41d8cd98f"
    emu.set_knobs(auth_header="apikey", auth_key=right)
    settings = settings_for(emu, api_key=SecretStr(wrong))
    async with GatewayClient(settings) as client:
        job = Job(runner, BatchActivities(client, storage), storage, "job-auth")
        summary = await job.validate(chat_file(2))
        with pytest.raises(ApplicationError) as uploaded:
            await job.upload(summary)
        with pytest.raises(ApplicationError) as polled:
            poll = AwaitChangeRequest(batch_id="batch_x", known_status="validating", poll_seconds=1)
            await runner.run(job.acts.await_status_change, poll)

    for error in (uploaded.value, polled.value):
        assert error.type == "AuthenticationError"
        assert error.non_retryable
        assert "401" in error.message
        for text in (error.message, str(error), str(error.__cause__), repr(error.__cause__)):
            assert wrong not in text
            assert right not in text


async def test_unreachable_gateway_is_retryable(
    runner: ActivityRunner, storage: LocalStorage
) -> None:
    settings = GatewaySettings(base_url="http://127.0.0.1:9", timeout_seconds=2.0)
    async with GatewayClient(settings) as client:
        acts = BatchActivities(client, storage)
        poll = AwaitChangeRequest(batch_id="batch_x", known_status="validating", poll_seconds=1)
        with pytest.raises(ApplicationError) as caught:
            await runner.run(acts.await_status_change, poll)
    assert caught.value.type == "GatewayUnreachableError"
    assert not caught.value.non_retryable


# -- collect_results --------------------------------------------------------


async def test_collect_results_writes_each_request_once_in_place(
    job: Job, emu: EmulatorProcess
) -> None:
    rate, requests = 0.3, 30
    emu.set_knobs(line_failure_rate=rate)
    data = chat_file(requests)
    done = await job.wait(await job.submit(data))
    assert done.status == "completed"
    assert done.counts is not None

    request = CollectResultsRequest(
        batch=done,
        input_path=INPUT,
        output_path="results/deep/out.jsonl",
        errors_path="results/deep/errors.jsonl",
        not_run_code="succeeded",
    )
    collected = await job.runner.run(job.acts.collect_results, request)

    folder = job.storage.path("results/deep")
    assert sorted(p.name for p in folder.iterdir()) == [
        ".errors.jsonl.written-by",  # which job wrote them: a rerun of it may write again
        ".out.jsonl.written-by",
        "errors.jsonl",
        "out.jsonl",
    ]
    assert (folder / ".out.jsonl.written-by").read_text() == "test"
    assert not list(job.storage.root.rglob("*.part"))
    results = read_jsonl(folder / "out.jsonl")
    errors = read_jsonl(folder / "errors.jsonl")
    ids = [f"req-{i}" for i in range(requests)]
    assert Counter(r["custom_id"] for r in results + errors) == Counter(ids)
    should_fail = {cid for cid in ids if injected_failure(cid, 0, rate) is not None}
    assert should_fail and len(should_fail) < requests
    assert {r["custom_id"] for r in errors} == should_fail
    assert all(r["response"]["status_code"] == 200 for r in results)

    assert (done.counts.total, done.counts.completed, done.counts.failed) == (
        requests,
        len(results),
        len(errors),
    )
    tally = collected.requests
    assert (tally.total, tally.succeeded, tally.failed, tally.not_run) == (
        requests,
        len(results),
        len(errors),
        0,
    )
    expected_codes = Counter(
        "rate_limit_exceeded" if injected_failure(cid, 0, rate) == 429 else "server_error"
        for cid in should_fail
    )
    assert tally.failures_by_code == dict(expected_codes)
    assert collected.problems == []
    assert collected.usage.total_tokens == sum(
        r["response"]["body"]["usage"]["total_tokens"] for r in results
    )
    assert collected.usage.total_tokens > 0


async def test_collect_results_after_cancel_marks_what_never_ran(
    job: Job, emu: EmulatorProcess
) -> None:
    emu.set_knobs(force_outcome="stuck_validating")
    batch = await job.submit(chat_file(6))
    cancelled = await job.runner.run(job.acts.cancel_batch, job.cancel_request(batch.id))
    assert cancelled is not None
    done = await job.wait(cancelled)
    assert done.status == "cancelled"

    request = CollectResultsRequest(
        batch=done,
        input_path=INPUT,
        output_path="out.jsonl",
        errors_path="errors.jsonl",
        not_run_code="batch_cancelled",
    )
    collected = await job.runner.run(job.acts.collect_results, request)

    errors = read_jsonl(job.storage.path("errors.jsonl"))
    assert sorted(r["custom_id"] for r in errors) == [f"req-{i}" for i in range(6)]
    assert {r["error"]["code"] for r in errors} == {"batch_cancelled"}
    assert job.storage.path("out.jsonl").read_bytes() == b""
    assert (collected.requests.not_run, collected.requests.failed) == (6, 0)


async def test_collect_results_azure_zero_byte_error_file(
    emu: EmulatorProcess, runner: ActivityRunner, storage: LocalStorage
) -> None:
    emu.set_knobs(dialect="azure")
    settings = settings_for(emu, dialect="azure")
    async with GatewayClient(settings) as client:
        job = Job(runner, BatchActivities(client, storage), storage, "job-azure")
        done = await job.wait(await job.submit(chat_file(4)))
        assert done.status == "completed"
        assert done.error_file_id, "Azure keeps an (empty) error file on success"
        request = CollectResultsRequest(
            batch=done,
            input_path=INPUT,
            output_path="out.jsonl",
            errors_path="errors.jsonl",
            not_run_code="succeeded",
        )
        collected = await runner.run(job.acts.collect_results, request)

    assert collected.requests.succeeded == 4
    assert collected.problems == []
    assert storage.path("errors.jsonl").read_bytes() == b""
    assert len(read_jsonl(storage.path("out.jsonl"))) == 4


# -- cancel_batch -----------------------------------------------------------


async def test_cancel_without_an_id_finds_the_batch_by_job_key(
    job: Job, emu: EmulatorProcess, gateway: GatewayClient
) -> None:
    emu.set_knobs(force_outcome="stuck_validating")
    batch = await job.submit(chat_file(3))

    cancelled = await job.runner.run(job.acts.cancel_batch, job.cancel_request(None))

    assert cancelled is not None
    assert cancelled.id == batch.id
    assert cancelled.status in ("cancelling", "cancelled")
    settled = await job.wait(cancelled)
    assert settled.status == "cancelled"
    assert (await gateway.get_batch(batch.id)).status == "cancelled"


async def test_cancel_without_an_id_and_no_batch_returns_none(job: Job) -> None:
    assert await job.runner.run(job.acts.cancel_batch, job.cancel_request(None)) is None


async def test_cancel_of_a_completed_batch_returns_its_snapshot(job: Job) -> None:
    done = await job.wait(await job.submit(chat_file(2)))

    result = await job.runner.run(job.acts.cancel_batch, job.cancel_request(done.id))

    assert result is not None
    assert (result.id, result.status) == (done.id, "completed")
    assert result.output_file_id == done.output_file_id
