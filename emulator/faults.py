"""Auth and injected faults, as an ASGI middleware in front of every API route.

Order: the key check first (a gateway rejects before anything reaches the
provider), then dropped connections, then error answers. ``/_emulator/*``
routes are exempt from all three, so a test can always reach the knobs.

A dropped connection is closed with no response at all: the middleware aborts
uvicorn's transport (reached through the ``send`` callable uvicorn hands to the
app), which is what a client sees when a proxy or load balancer dies mid-call.

An ambiguous create lets ``POST /batches`` make its batch and then, instead of
the 200, drops the connection or answers 502: the client cannot tell whether a
batch exists, as when a gateway times out after the provider acted.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import random
from collections import Counter
from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from emulator.errors import error_body
from emulator.knobs import Knobs

log = logging.getLogger("emulator.faults")

ADMIN_PREFIX = "/_emulator"

_MESSAGES = {
    429: "Rate limit reached (injected by the emulator).",
    500: "The server had an error while processing your request (injected).",
    502: "Bad gateway (injected by the emulator).",
    503: "The service is temporarily unavailable (injected).",
    504: "Gateway timeout (injected by the emulator).",
}


async def send_json(
    send: Send, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
) -> None:
    payload = json.dumps(body).encode()
    raw_headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
    ]
    raw_headers += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": payload})


def _header(scope: Scope, name: str) -> str | None:
    wanted = name.lower().encode()
    for key, value in scope.get("headers", []):
        if key.lower() == wanted:
            return bytes(value).decode("latin-1")
    return None


def authorised(scope: Scope, knobs: Knobs) -> bool:
    assert knobs.auth_header and knobs.auth_key
    got = _header(scope, knobs.auth_header)
    if got is None:
        return False
    expected = knobs.auth_key
    if knobs.auth_header.lower() == "authorization":
        expected = f"Bearer {knobs.auth_key}"
    return hmac.compare_digest(got.encode(), expected.encode())


_PREFIXES = ("/openai/v1", "/openai", "/v1", "")


def _is_create_batch(scope: Scope) -> bool:
    path: str = scope["path"].rstrip("/")
    return scope["method"] == "POST" and any(path == p + "/batches" for p in _PREFIXES)


def _is_get_batch(scope: Scope) -> bool:
    return scope["method"] == "GET" and route_of(scope) == "GET /batches/{id}"


async def _refuse_read(send: Send, answer: str) -> None:
    if answer == "no_route":
        await send_json(send, 404, {"message": "no Route matched with those values"})
        return
    status = int(answer)
    message = (
        "Incorrect API key provided."
        if status == 401
        else "The API key is not allowed to access this resource."
    )
    code = "invalid_api_key" if status == 401 else "permission_denied"
    await send_json(send, status, error_body(status, message, code=code))


def _unsupported_route(scope: Scope) -> str | None:
    """Which switchable route a request is for, if any."""
    path: str = scope["path"].rstrip("/")
    for prefix in _PREFIXES:
        if prefix and not path.startswith(prefix + "/"):
            continue
        rest = path[len(prefix) :]
        parts = rest.strip("/").split("/")
        method = scope["method"]
        if method == "GET" and parts == ["files"]:
            return "list_files"
        if method == "GET" and parts == ["batches"]:
            return "list_batches"
        if method == "POST" and len(parts) == 3 and parts[0] == "batches" and parts[2] == "cancel":
            return "cancel_batch"
        if method == "DELETE" and len(parts) == 2 and parts[0] == "files":
            return "delete_file"
        return None
    return None


def route_of(scope: Scope) -> str:
    """``GET /batches/{id}``: the call's method and route with ids and gateway prefix removed."""
    path: str = scope["path"].rstrip("/")
    for prefix in _PREFIXES:
        if prefix and path.startswith(prefix + "/"):
            path = path[len(prefix) :]
            break
    parts = path.strip("/").split("/")
    shape = "/".join(p if i % 2 == 0 else "{id}" for i, p in enumerate(parts))
    return f"{scope['method']} /{shape}"


class FaultsMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        knobs: Callable[[], Knobs],
        claim_ambiguous_create: Callable[[], bool] = lambda: False,
        claim_refused_read: Callable[[], bool] = lambda: False,
    ) -> None:
        self.app = app
        self.knobs = knobs
        self.claim_ambiguous_create = claim_ambiguous_create
        self.claim_refused_read = claim_refused_read
        self._rng = random.Random(knobs().seed)
        self.dropped = 0
        self.injected = 0
        self.ambiguous_creates = 0
        self.refused_reads = 0
        # Every API call as it arrived, refused or not: what a client costs the gateway.
        self.calls: Counter[str] = Counter()
        self.api_requests = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(ADMIN_PREFIX):
            await self.app(scope, receive, send)
            return
        self.calls[route_of(scope)] += 1
        self.api_requests += 1
        knobs = self.knobs()
        if knobs.auth_required and not authorised(scope, knobs):
            await send_json(
                send,
                401,
                error_body(
                    401,
                    f"Missing or invalid API key in the '{knobs.auth_header}' header.",
                    code="invalid_api_key",
                ),
                {"www-authenticate": "Bearer" if knobs.auth_header == "Authorization" else "Key"},
            )
            return
        if _is_get_batch(scope) and knobs.refused_batch_reads > 0 and self.claim_refused_read():
            self.refused_reads += 1
            await _refuse_read(send, knobs.refused_batch_read_answer)
            return
        unsupported = _unsupported_route(scope)
        if unsupported is not None and unsupported in knobs.unsupported_routes:
            # Kong's own answer when no route matches: not OpenAI's error shape.
            await send_json(send, 404, {"message": "no Route matched with those values"})
            return
        if knobs.drop_rate > 0 and self._rng.random() < knobs.drop_rate and await self._drop(send):
            return
        if knobs.error_rate > 0 and self._rng.random() < knobs.error_rate:
            self.injected += 1
            status = self._rng.choice(knobs.error_statuses)
            headers = {}
            if status in (429, 503):
                headers["retry-after"] = f"{knobs.retry_after_seconds:g}"
                headers["retry-after-ms"] = str(int(knobs.retry_after_seconds * 1000))
            message = _MESSAGES.get(status, f"Injected error {status}.")
            code = "rate_limit_exceeded" if status == 429 else None
            await send_json(send, status, error_body(status, message, code=code), headers)
            return
        raw_send = send
        if knobs.response_delay_seconds > 0:
            send = self._delayed(send, knobs.response_delay_seconds)
        if knobs.ambiguous_creates > 0 and _is_create_batch(scope):
            send = self._ambiguous(send, raw_send, knobs.ambiguous_create_answer)
        await self.app(scope, receive, send)

    def _ambiguous(self, send: Send, raw_send: Send, answer: str) -> Send:
        """Once the route has made its batch (200), drop the connection or answer 502."""
        swallowing = False

        async def ambiguous_send(message: Message) -> None:
            nonlocal swallowing
            if swallowing:
                return
            if (
                message["type"] == "http.response.start"
                and message["status"] == 200
                and self.claim_ambiguous_create()
            ):
                swallowing = True
                self.ambiguous_creates += 1
                if answer == "drop" and await self._drop(raw_send):
                    return
                body = error_body(502, _MESSAGES[502])
                await send_json(send, 502, body)
                return
            await send(message)

        return ambiguous_send

    @staticmethod
    def _delayed(send: Send, seconds: float) -> Send:
        """Hold the answer back once the route has done its work."""

        async def delayed_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                await asyncio.sleep(seconds)
            await send(message)

        return delayed_send

    async def _drop(self, send: Send) -> bool:
        """Abort the connection; False when the server gives no handle to do it."""
        transport = getattr(getattr(send, "__self__", None), "transport", None)
        if transport is None or not hasattr(transport, "abort"):
            log.warning("cannot drop a connection: no transport behind 'send'")
            return False
        self.dropped += 1
        transport.abort()
        # Let uvicorn see the connection is gone before the app returns, so it
        # does not try to answer with a 500 of its own.
        for _ in range(3):
            await asyncio.sleep(0)
        return True
