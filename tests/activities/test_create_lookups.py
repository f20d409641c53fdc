"""What the create step's look-ups for an earlier attempt's batch cost, and what they still find.

Against the real emulator over HTTP; the gateway calls are the emulator's own count.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import cast

import httpx

from activities.batch_activities import BatchActivities
from contracts.names import JOB_KEY_METADATA
from contracts.steps import BatchSnapshot, CancelBatchRequest, CreateBatchRequest
from devstack.emulator import EmulatorProcess
from gateway.client import GatewayClient
from gateway.models import Batch
from storage import LocalStorage
from tests.activities.conftest import settings_for
from tests.activities.helpers import CHAT, ActivityRunner, TemporalHeartbeats, chat_file


def calls(emulator: EmulatorProcess) -> Counter[str]:
    return Counter(emulator.stats()["api_calls"])


async def upload(gateway: GatewayClient, tmp_path: Path) -> str:
    source = tmp_path / "input.jsonl"
    source.write_bytes(chat_file(3))
    return (await gateway.upload_file(source, filename=source.name)).id


def create_request(
    file_id: str, key: str, *, fresh: bool, not_before: datetime | None = None
) -> CreateBatchRequest:
    return CreateBatchRequest(
        input_file_id=file_id,
        endpoint=CHAT,
        completion_window="24h",
        metadata={},
        job_key=key,
        not_before=not_before or datetime.now(UTC),
        fresh_input=fresh,
    )


async def create(
    emulator: EmulatorProcess,
    runner: ActivityRunner,
    acts: BatchActivities,
    request: CreateBatchRequest,
    attempt: int = 1,
) -> tuple[BatchSnapshot, Counter[str]]:
    """The snapshot, and the gateway calls the step made."""
    before = calls(emulator)
    snapshot = await runner.run(acts.create_batch, request, attempt=attempt)
    return snapshot, calls(emulator) - before


def old_batches(emulator: EmulatorProcess, count: int) -> None:
    """``count`` ended batches of other work at the gateway."""
    emulator.set_knobs(force_outcome="failed")
    line = b'{"custom_id": "x", "method": "POST", "url": "' + CHAT.encode() + b'", "body": {}}\n'
    with httpx.Client(base_url=emulator.base_url, timeout=30.0) as http:
        file_id = http.post(
            "/files", files={"file": ("old.jsonl", line)}, data={"purpose": "batch"}
        ).json()["id"]
        for _ in range(count):
            body = {"input_file_id": file_id, "endpoint": CHAT, "completion_window": "24h"}
            http.post("/batches", json=body).raise_for_status()
    emulator.set_knobs(force_outcome="none")


async def test_the_first_create_of_a_fresh_input_looks_only_after_creating(
    fresh_emu: EmulatorProcess, runner: ActivityRunner, storage: LocalStorage, tmp_path: Path
) -> None:
    """With no Temporal to ask whether the attempt is still current, it looks."""
    async with GatewayClient(settings_for(fresh_emu)) as gateway:
        acts = BatchActivities(gateway, storage)
        file_id = await upload(gateway, tmp_path)
        batch, made = await create(
            fresh_emu, runner, acts, create_request(file_id, "k1", fresh=True)
        )

    assert batch.adopted is False
    assert made == Counter({"POST /batches": 1, "GET /batches": 1})


async def test_a_first_create_temporal_still_takes_looks_up_nothing(
    fresh_emu: EmulatorProcess, storage: LocalStorage, tmp_path: Path
) -> None:
    """Its heartbeat, accepted after the create was answered, shows no retry had started."""
    temporal = TemporalHeartbeats()
    async with GatewayClient(settings_for(fresh_emu)) as gateway:
        acts = BatchActivities(gateway, storage)
        file_id = await upload(gateway, tmp_path)
        batch, made = await create(
            fresh_emu, ActivityRunner(temporal), acts, create_request(file_id, "k5", fresh=True)
        )

    assert batch.adopted is False
    assert made == Counter({"POST /batches": 1})
    assert len(temporal.sent) == 2, "the mark before the POST, the check after it"


async def test_a_first_create_temporal_has_timed_out_looks_and_keeps_one_batch(
    fresh_emu: EmulatorProcess, storage: LocalStorage, tmp_path: Path
) -> None:
    """Declared dead while it created (its retry's batch exists): it looks, and one stays."""
    fresh_emu.set_knobs(force_outcome="stuck_validating")
    temporal = TemporalHeartbeats(accepts=1)
    async with GatewayClient(settings_for(fresh_emu)) as gateway:
        acts = BatchActivities(gateway, storage)
        file_id = await upload(gateway, tmp_path)
        retrys = await gateway.create_batch(
            input_file_id=file_id, endpoint=CHAT, metadata={JOB_KEY_METADATA: "k6"}
        )
        kept, made = await create(
            fresh_emu, ActivityRunner(temporal), acts, create_request(file_id, "k6", fresh=True)
        )
        statuses = {b.id: b.status.value async for b in gateway.iter_batches()}

    assert made["GET /batches"] == 1
    # Both agree on the oldest (created_at, then id): the other is cancelled.
    assert retrys.id in statuses and len(statuses) == 2
    assert kept.adopted is (kept.id == retrys.id)
    assert statuses.pop(kept.id) == "validating"
    assert list(statuses.values()) in (["cancelling"], ["cancelled"])


async def test_a_retried_create_of_a_fresh_input_still_adopts_the_first_attempts_batch(
    fresh_emu: EmulatorProcess, runner: ActivityRunner, storage: LocalStorage, tmp_path: Path
) -> None:
    async with GatewayClient(settings_for(fresh_emu)) as gateway:
        acts = BatchActivities(gateway, storage)
        file_id = await upload(gateway, tmp_path)
        request = create_request(file_id, "k2", fresh=True)
        first, _ = await create(fresh_emu, runner, acts, request)
        retried, made = await create(fresh_emu, runner, acts, request, attempt=2)

    assert (retried.id, retried.adopted) == (first.id, True)
    assert made == Counter({"GET /batches": 1})


async def test_a_first_create_that_meets_another_attempts_batch_keeps_that_one(
    fresh_emu: EmulatorProcess, runner: ActivityRunner, storage: LocalStorage, tmp_path: Path
) -> None:
    """An attempt declared dead but still running created too: one batch stays, unbilled."""
    fresh_emu.set_knobs(force_outcome="stuck_validating")
    async with GatewayClient(settings_for(fresh_emu)) as gateway:
        acts = BatchActivities(gateway, storage)
        file_id = await upload(gateway, tmp_path)
        other = await gateway.create_batch(
            input_file_id=file_id, endpoint=CHAT, metadata={JOB_KEY_METADATA: "k3"}
        )
        kept, _ = await create(fresh_emu, runner, acts, create_request(file_id, "k3", fresh=True))
        statuses = {b.id: b.status.value async for b in gateway.iter_batches()}

    # Both attempts agree on the oldest (created_at, then id): the other is cancelled.
    assert other.id in statuses and len(statuses) == 2
    assert statuses.pop(kept.id) == "validating"
    assert list(statuses.values()) in (["cancelling"], ["cancelled"])
    assert kept.adopted is (kept.id == other.id)


async def test_a_look_up_stops_paging_at_batches_older_than_the_job(
    fresh_emu: EmulatorProcess, runner: ActivityRunner, storage: LocalStorage, tmp_path: Path
) -> None:
    """150 batches of other work, all from before the job: one page a look, not two."""
    old_batches(fresh_emu, 150)
    async with GatewayClient(settings_for(fresh_emu)) as gateway:
        acts = BatchActivities(gateway, storage)
        file_id = await upload(gateway, tmp_path)
        later = datetime.now(UTC) + timedelta(hours=1)
        request = create_request(file_id, "k4", fresh=False, not_before=later)
        batch, made = await create(fresh_emu, runner, acts, request)
        retried, made_again = await create(fresh_emu, runner, acts, request, attempt=2)

    assert batch.adopted is False
    assert made == Counter({"POST /batches": 1, "GET /batches": 2})
    # Its own batch is older than that job too: not adopted, as before.
    assert retried.adopted is False
    assert made_again["GET /batches"] == 2


class OldestFirst:
    """A gateway that lists oldest first: the job's batch comes after the old ones."""

    def __init__(self, batches: list[Batch]) -> None:
        self.batches = batches

    async def iter_batches(self) -> AsyncIterator[Batch]:
        for batch in self.batches:
            yield batch

    async def get_batch(self, batch_id: str) -> Batch:
        return next(b for b in self.batches if b.id == batch_id)


async def test_a_gateway_listing_oldest_first_is_read_to_the_end(
    runner: ActivityRunner, storage: LocalStorage
) -> None:
    started = datetime.now(UTC)
    old = int((started - timedelta(days=1)).timestamp())

    def batch(batch_id: str, created_at: int, key: str) -> Batch:
        return Batch.model_validate(
            {
                "id": batch_id,
                "status": "completed",
                "created_at": created_at,
                "metadata": {JOB_KEY_METADATA: key},
            }
        )

    listing = [batch(f"old-{i}", old + i, "other") for i in range(5)]
    listing.append(batch("mine", int(started.timestamp()), "k5"))
    acts = BatchActivities(cast(GatewayClient, OldestFirst(listing)), storage)
    request = CancelBatchRequest(batch_id=None, job_key="k5", not_before=started)

    found = await runner.run(acts.cancel_batch, request)

    assert found is not None and found.id == "mine"


async def test_a_look_up_reaches_back_to_the_job_however_many_batches_came_since(
    runner: ActivityRunner, storage: LocalStorage
) -> None:
    """A busy resource: 3,000 batches of other work since the job's own, newest first."""
    started = datetime.now(UTC) - timedelta(days=2)
    first = int(started.timestamp()) + 60

    def batch(batch_id: str, created_at: int, key: str) -> Batch:
        return Batch.model_validate(
            {
                "id": batch_id,
                "status": "completed",
                "created_at": created_at,
                "metadata": {JOB_KEY_METADATA: key},
            }
        )

    newer = [batch(f"other-{i}", first + 3_000 - i, "other") for i in range(3_000)]
    older = [batch(f"older-{i}", first - 7_200 - i, "other") for i in range(10)]
    acts = BatchActivities(
        cast(GatewayClient, OldestFirst([*newer, batch("mine", first, "k6"), *older])), storage
    )
    request = CancelBatchRequest(batch_id=None, job_key="k6", not_before=started)

    found = await runner.run(acts.cancel_batch, request)

    assert found is not None and found.id == "mine", "bounded by the job's start, not a count"


async def test_cancel_by_key_cancels_only_the_batches_of_the_jobs_own_input(
    gateway: GatewayClient, acts: BatchActivities, runner: ActivityRunner, tmp_path: Path
) -> None:
    """A caller-chosen job key naming another team's job: their batch runs on."""
    started = datetime.now(UTC) - timedelta(seconds=5)
    key = f"shared-key-{started.timestamp()}"
    theirs_file = await upload(gateway, tmp_path)
    theirs = await gateway.create_batch(
        input_file_id=theirs_file, endpoint=CHAT, metadata={JOB_KEY_METADATA: key}
    )
    mine_file = await upload(gateway, tmp_path)
    mine = await gateway.create_batch(
        input_file_id=mine_file, endpoint=CHAT, metadata={JOB_KEY_METADATA: key}
    )

    found = await runner.run(
        acts.cancel_batch,
        CancelBatchRequest(batch_id=None, job_key=key, not_before=started, input_file_id=mine_file),
    )

    assert found is not None and found.id == mine.id
    assert (await gateway.get_batch(mine.id)).status in ("cancelling", "cancelled")
    assert (await gateway.get_batch(theirs.id)).status not in ("cancelling", "cancelled")

    by_content = await runner.run(
        acts.cancel_batch,
        CancelBatchRequest(batch_id=None, job_key=key, not_before=started, input_sha256="ef" * 32),
    )
    assert by_content is None, "no batch of theirs runs a file uploaded from this input"
    assert (await gateway.get_batch(theirs.id)).status not in ("cancelling", "cancelled")
