"""POST /webhooks: verify, dedupe, relay; GET /healthz for probes.

Answers: 200 for an event handled (or a duplicate, or one that concerns no
waiting job), 400 for a malformed one, 401 for a bad or stale signature, 413
for a body over the limit, 503 when the job could not be told yet (the provider
delivers again). Logs carry the event's ids and type, never its body or a secret.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from temporalio.service import RPCError

from contracts.events import BATCH_EVENT_TYPES, BatchEvent
from webhooks.relay import Delivery
from webhooks.seen import SeenIds
from webhooks.verify import EventVerifier, Refused

log = logging.getLogger("webhooks")

MAX_BODY_BYTES = 64 * 1024
"""A batch event is a few hundred bytes; anything this large is not one."""

Deliver = Callable[[BatchEvent, float | None], Awaitable[Delivery]]


def create_app(verifier: EventVerifier, deliver: Deliver, seen: SeenIds | None = None) -> FastAPI:
    app = FastAPI(title="batch webhooks", docs_url=None, redoc_url=None, openapi_url=None)
    seen_ids = seen or SeenIds()

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/webhooks")
    async def receive(request: Request) -> JSONResponse:
        body = await _bounded_body(request)
        if body is None:
            return _answer(413, f"body larger than {MAX_BODY_BYTES} bytes")
        try:
            event = verifier.verify(body, request.headers)
        except Refused as exc:
            log.warning("refused an event (webhook-id %s): %s", _id(request.headers), exc.reason)
            return _answer(exc.status, exc.reason)
        webhook_id = request.headers["webhook-id"]
        kind = str(event.get("type", ""))[:100]
        if kind not in BATCH_EVENT_TYPES:
            log.info("event %s of type %r is not a batch's end; acknowledged", webhook_id, kind)
            return _answer(200, "ignored")
        try:
            batch = _batch_event(event, kind)
        except ValidationError:
            log.warning("event %s (%s) carries no usable data.id", webhook_id, kind)
            return _answer(400, "data.id missing or malformed")
        if not seen_ids.claim(webhook_id):
            log.info("event %s (%s, batch %s) already handled", webhook_id, kind, batch.batch_id)
            return _answer(200, "duplicate")
        created = event.get("created_at")
        created_at = float(created) if isinstance(created, int | float) else None
        try:
            delivery = await deliver(batch, created_at)
        except RPCError as exc:
            seen_ids.release(webhook_id)
            log.warning("event %s: Temporal did not answer (%s); asked again", webhook_id, exc)
            return _answer(503, "Temporal unavailable")
        log.info("event %s (%s, batch %s): %s", webhook_id, kind, batch.batch_id, delivery.value)
        if delivery is Delivery.RETRY_LATER:
            seen_ids.release(webhook_id)
            return _answer(503, delivery.value)
        return _answer(200, delivery.value)

    return app


async def _bounded_body(request: Request) -> bytes | None:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            return None
    return bytes(body)


def _batch_event(event: dict[str, Any], kind: str) -> BatchEvent:
    data = event.get("data")
    batch_id = data.get("id") if isinstance(data, dict) else None
    return BatchEvent.model_validate(
        {"batch_id": batch_id, "type": kind, "event_id": str(event.get("id", ""))[:200]}
    )


def _id(headers: Mapping[str, str]) -> str:
    return headers.get("webhook-id", "none")[:100]


def _answer(status: int, message: str) -> JSONResponse:
    return JSONResponse({"status": message}, status_code=status)
