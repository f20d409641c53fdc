"""The receiver's HTTP contract: only a fresh, correctly signed batch event reaches a job, once."""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from contracts.events import BatchEvent
from webhooks.app import MAX_BODY_BYTES, create_app
from webhooks.relay import Delivery
from webhooks.verify import EventVerifier, parse_secrets

OLD_SECRET = "whsec_" + base64.b64encode(b"old-secret-of-32-bytes-0123456789").decode()
NEW_SECRET = "whsec_" + base64.b64encode(b"new-secret-of-32-bytes-0123456789").decode()


class Jobs:
    """What the relay was asked to deliver, and what it answers."""

    def __init__(self) -> None:
        self.delivered: list[BatchEvent] = []
        self.answers: list[Delivery] = []

    async def deliver(self, event: BatchEvent, created_at: float | None) -> Delivery:
        self.delivered.append(event)
        return self.answers.pop(0) if self.answers else Delivery.SIGNALLED


def signed(
    secret: str,
    *,
    webhook_id: str = "wh_1",
    batch_id: str = "batch_abc",
    kind: str = "batch.completed",
    at: float | None = None,
) -> tuple[bytes, dict[str, str]]:
    stamp = time.time() if at is None else at
    body = json.dumps(
        {
            "object": "event",
            "id": "evt_1",
            "type": kind,
            "created_at": int(stamp),
            "data": {"id": batch_id},
        }
    )
    signature = Webhook(secret).sign(webhook_id, datetime.fromtimestamp(stamp, UTC), body)
    headers = {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(stamp)),
        "webhook-signature": signature,
        "content-type": "application/json",
    }
    return body.encode(), headers


@pytest.fixture
def jobs() -> Jobs:
    return Jobs()


@pytest.fixture
def client(jobs: Jobs) -> httpx.AsyncClient:
    app = create_app(EventVerifier(parse_secrets(f"{NEW_SECRET}, {OLD_SECRET}")), jobs.deliver)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://receiver")


async def test_a_signed_event_reaches_the_job_of_its_batch(
    client: httpx.AsyncClient, jobs: Jobs
) -> None:
    body, headers = signed(NEW_SECRET)
    resp = await client.post("/webhooks", content=body, headers=headers)
    assert resp.status_code == 200
    assert [(e.batch_id, e.type) for e in jobs.delivered] == [("batch_abc", "batch.completed")]


async def test_either_secret_verifies_during_a_rotation(
    client: httpx.AsyncClient, jobs: Jobs
) -> None:
    body, headers = signed(OLD_SECRET)
    assert (await client.post("/webhooks", content=body, headers=headers)).status_code == 200
    assert len(jobs.delivered) == 1


async def test_a_forged_event_is_refused_and_reaches_no_job(
    client: httpx.AsyncClient, jobs: Jobs
) -> None:
    forger = "whsec_" + base64.b64encode(b"somebody-else-entirely-0123456789").decode()
    body, headers = signed(forger)
    resp = await client.post("/webhooks", content=body, headers=headers)
    assert resp.status_code == 401
    tampered_body, good_headers = signed(NEW_SECRET)
    tampered = tampered_body.replace(b"batch_abc", b"batch_xyz")
    assert (
        await client.post("/webhooks", content=tampered, headers=good_headers)
    ).status_code == 401
    assert jobs.delivered == []


async def test_a_stale_event_is_refused(client: httpx.AsyncClient, jobs: Jobs) -> None:
    body, headers = signed(NEW_SECRET, at=time.time() - 6 * 60)
    resp = await client.post("/webhooks", content=body, headers=headers)
    assert resp.status_code == 401
    assert "too old" in resp.json()["status"]
    assert jobs.delivered == []


async def test_a_replayed_event_is_handled_once(client: httpx.AsyncClient, jobs: Jobs) -> None:
    body, headers = signed(NEW_SECRET)
    first = await client.post("/webhooks", content=body, headers=headers)
    again = await client.post("/webhooks", content=body, headers=headers)
    assert (first.status_code, again.status_code) == (200, 200)
    assert again.json()["status"] == "duplicate"
    assert len(jobs.delivered) == 1


async def test_an_event_no_job_has_recorded_yet_is_asked_again(
    client: httpx.AsyncClient, jobs: Jobs
) -> None:
    jobs.answers = [Delivery.RETRY_LATER]
    body, headers = signed(NEW_SECRET)
    assert (await client.post("/webhooks", content=body, headers=headers)).status_code == 503
    # The provider's redelivery (same webhook-id) is handled, not taken for a duplicate.
    assert (await client.post("/webhooks", content=body, headers=headers)).status_code == 200
    assert len(jobs.delivered) == 2


@pytest.mark.parametrize(
    ("headers", "body", "status"),
    [
        ({}, b"{}", 400),
        (
            {
                "webhook-id": "x",
                "webhook-timestamp": "now",
                "webhook-signature": "garbage",
            },
            b"{}",
            400,
        ),
        ({}, b"x" * (MAX_BODY_BYTES + 1), 413),
    ],
    ids=["no-headers", "malformed-signature", "too-large"],
)
async def test_malformed_requests_are_refused(
    client: httpx.AsyncClient, jobs: Jobs, headers: dict[str, str], body: bytes, status: int
) -> None:
    # The timestamp is taken as the test runs, not when the suite was collected.
    headers = {k: str(int(time.time())) if v == "now" else v for k, v in headers.items()}
    assert (await client.post("/webhooks", content=body, headers=headers)).status_code == status
    assert jobs.delivered == []


async def test_other_event_types_are_acknowledged_and_ignored(
    client: httpx.AsyncClient, jobs: Jobs
) -> None:
    body, headers = signed(NEW_SECRET, kind="response.completed")
    resp = await client.post("/webhooks", content=body, headers=headers)
    assert resp.status_code == 200
    assert jobs.delivered == []


def test_a_secret_that_is_not_whsec_base64_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match="secret 2 of 2"):
        parse_secrets(f"{NEW_SECRET},whsec_!!!")
    with pytest.raises(ValueError, match="empty"):
        parse_secrets(" , ")
