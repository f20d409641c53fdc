"""The emulator's batch events: each batch's end, signed and posted the Standard Webhooks way.

Configured with ``webhook_url`` and ``webhook_secret`` (a ``whsec_`` secret), the
emulator posts ``batch.completed``, ``batch.failed``, ``batch.expired`` or
``batch.cancelled`` with the thin payload the providers send (``data.id`` is the
batch id). Like them it delivers at least once: an answer other than 2xx (or
none) is retried with backoff for ``webhook_retry_seconds``, each attempt signed
afresh with the same ``webhook-id``. Knobs make delivery worse on purpose:
``webhook_drop_rate`` loses events, ``webhook_duplicates`` sends each again,
``webhook_delay_seconds`` holds each, ``webhook_reorder_seconds`` holds each a
random extra time so later events overtake earlier ones.

Signing is written out here (HMAC-SHA256 over ``id.timestamp.body``) rather than
taken from the receiver's library, so the two meet only on the wire.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import random
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx

from emulator.knobs import Knobs
from emulator.models import BatchRecord

log = logging.getLogger("emulator.webhooks")

MAX_BACKOFF_SECONDS = 30.0


def sign(secret: str, webhook_id: str, timestamp: int, body: str) -> str:
    """The ``webhook-signature`` header value for ``body``."""
    key = base64.b64decode(secret.removeprefix("whsec_") + "==")
    digest = hmac.new(key, f"{webhook_id}.{timestamp}.{body}".encode(), hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


class EventSender:
    def __init__(self, knobs: Callable[[], Knobs]) -> None:
        self._knobs = knobs
        self._tasks: set[asyncio.Task[None]] = set()
        self._rng = random.Random(knobs().seed)
        self.sent = 0
        self.dropped = 0
        self.refused = 0

    def batch_ended(self, record: BatchRecord) -> None:
        knobs = self._knobs()
        if not (knobs.webhook_url and knobs.webhook_secret):
            return
        if knobs.webhook_drop_rate > 0 and self._rng.random() < knobs.webhook_drop_rate:
            self.dropped += 1
            log.info("dropping the %s event of %s (webhook_drop_rate)", record.status, record.id)
            return
        event = {
            "object": "event",
            "id": f"evt_{uuid.uuid4().hex}",
            "type": f"batch.{record.status}",
            "created_at": int(time.time()),
            "data": {"id": record.id},
        }
        webhook_id = f"wh_{uuid.uuid4().hex}"
        hold = knobs.webhook_delay_seconds + self._rng.uniform(0, knobs.webhook_reorder_seconds)
        for copy in range(1 + knobs.webhook_duplicates):
            task = asyncio.create_task(
                self._deliver(webhook_id, json.dumps(event), hold + copy * 0.05),
                name=f"webhook-{record.id}-{copy}",
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _deliver(self, webhook_id: str, body: str, hold: float) -> None:
        await asyncio.sleep(hold)
        started = time.monotonic()
        backoff = 1.0
        async with httpx.AsyncClient(timeout=10.0) as http:
            while True:
                knobs = self._knobs()
                if not (knobs.webhook_url and knobs.webhook_secret):
                    return
                stamp = int(time.time())
                headers = {
                    "content-type": "application/json",
                    "webhook-id": webhook_id,
                    "webhook-timestamp": str(stamp),
                    "webhook-signature": sign(knobs.webhook_secret, webhook_id, stamp, body),
                }
                try:
                    answer = await http.post(knobs.webhook_url, content=body, headers=headers)
                    status: int | str = answer.status_code
                    if answer.is_success:
                        self.sent += 1
                        return
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                self.refused += 1
                if time.monotonic() - started + backoff > knobs.webhook_retry_seconds:
                    log.warning("gave up delivering event %s (last answer %s)", webhook_id, status)
                    return
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)

    def stats(self) -> dict[str, Any]:
        return {"sent": self.sent, "dropped": self.dropped, "refused": self.refused}

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
