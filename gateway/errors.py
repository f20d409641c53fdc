"""The one place that turns HTTP outcomes into meaningful exceptions.

The client never retries: Temporal's retry policies do. Each error says whether
a retry can help, and how long the gateway asked us to wait.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Collection
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from contracts.text import printable
from gateway.redaction import redact

RETRYABLE_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


class GatewayError(Exception):
    """A failed call to the gateway.

    outcome_unknown: the request may have reached the gateway and been acted on
    (a timeout or dropped connection after sending, a 5xx, a 2xx whose body was
    unreadable), so a create may have made its batch. False when the gateway
    certainly did nothing: the connection was never made, or it answered 4xx.
    """

    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        code: str | None = None,
        retry_after: float | None = None,
        outcome_unknown: bool = False,
        timed_out: bool = False,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.code = code
        self.retry_after = retry_after
        self.outcome_unknown = outcome_unknown
        # No answer in time: the client's timeout, or a gateway's 408/504.
        self.timed_out = timed_out or status_code in (408, 504)


class RetryableGatewayError(GatewayError):
    """Worth another try: 408/409/429/5xx, connection failures, timeouts."""

    retryable = True


class GatewayUnreachableError(RetryableGatewayError):
    """No HTTP answer at all: connection refused, dropped, or timed out."""


class InputFileNotReadyError(RetryableGatewayError):
    """A batch refused because its input file is still being processed (Azure: 'pending')."""


class RejectedByGatewayError(GatewayError):
    """A 4xx that no retry will fix; carries the gateway's own message."""


class AuthenticationError(RejectedByGatewayError):
    """401/403: the key is missing, wrong, or lacks permission."""


class NotFoundError(RejectedByGatewayError):
    """404 on an object: the id does not exist (or the route does not)."""


class RouteNotSupportedError(RejectedByGatewayError):
    """404/405 on a list or cancel route: the gateway does not expose it (Kong may not)."""


class NotAnIdError(GatewayError):
    """A batch or file id, from a caller or a gateway, that is not an id's shape.

    Never retried: the same id fails the same way. One from a caller is refused
    before any request is sent.
    """


# Azure's refusal of a batch on an unprocessed file, as users report it:
# "The input file 'file-…' is in 'pending' state. Only files with status
# 'Processed' are accepted for batch inferencing. ..." Its status code and
# error code are undocumented, so the words decide.
_FILE_STATE_REFUSAL = re.compile(r"is in '(?P<state>[A-Za-z_ ]+)' state", re.IGNORECASE)
_FILE_STATES_STILL_PROCESSING = frozenset({"uploaded", "pending", "running", "processing"})

# Transport failures that happen before any byte of the request leaves: the
# gateway cannot have acted. Every other one (read timeout, dropped connection,
# a write cut short) may come after it did.
_NOT_SENT = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.ProxyError,
    httpx.UnsupportedProtocol,
    httpx.LocalProtocolError,
)

_MAX_MESSAGE_CHARS = 2000
_HTML_TAG = re.compile(r"<[^>]*>")
_HTML_DROP = re.compile(r"<(script|style)\b.*?</\1\s*>", re.IGNORECASE | re.DOTALL)


def _seconds(value: float) -> float | None:
    return max(0.0, value) if math.isfinite(value) else None


def parse_retry_after(response: httpx.Response) -> float | None:
    """Seconds to wait, from retry-after-ms, or Retry-After in seconds or as an HTTP date."""
    raw = response.headers.get("retry-after-ms")
    if raw:
        try:
            return _seconds(float(raw) / 1000.0)
        except ValueError:
            pass
    raw = response.headers.get("retry-after")
    if raw:
        try:
            return _seconds(float(raw))
        except ValueError:
            pass
        try:
            when = parsedate_to_datetime(raw)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return _seconds((when - datetime.now(UTC)).total_seconds())
    return None


def _readable_text(response: httpx.Response, text: str) -> str:
    """An HTML error page (from a proxy or load balancer) reduced to its words."""
    content_type = response.headers.get("content-type", "").lower()
    if "html" in content_type or text.lstrip().startswith("<"):
        text = _HTML_TAG.sub(" ", _HTML_DROP.sub(" ", text))
    return " ".join(text.split())


def _gateway_message(response: httpx.Response) -> tuple[str, str | None]:
    try:
        full = response.text
    except httpx.ResponseNotRead:
        full = ""
    try:
        body: Any = json.loads(full) if full.strip() else None
    except json.JSONDecodeError:
        body = None
    text = full[:_MAX_MESSAGE_CHARS]
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict):
            message = err.get("message") or err.get("detail") or text
            code = err.get("code") or err.get("type")
            return str(message), str(code) if code is not None else None
        if isinstance(err, str):
            return err, None
        if "message" in body:
            return str(body["message"]), None
    return (_readable_text(response, text)[:500] or response.reason_phrase or "no body"), None


def error_for_response(
    response: httpx.Response,
    *,
    operation: str,
    collection_route: bool = False,
    secrets: Collection[str] = (),
) -> GatewayError:
    """Classify a non-2xx answer; the response body must already be read.

    secrets (GatewaySettings.secret_values()) are masked out of the message:
    it ends up in logs and in Temporal's workflow history.
    """
    status = response.status_code
    gateway_message, code = _gateway_message(response)
    # The gateway's words are cut short and escaped before they reach history or a terminal.
    gateway_message = printable(gateway_message)
    code = printable(code, 100) if code is not None else None
    message = redact(
        f"{operation}: gateway answered {status} {response.reason_phrase}: {gateway_message}",
        secrets,
    )
    if collection_route and status == 501:
        return RouteNotSupportedError(message, status_code=status, code=code)
    if 400 <= status < 500 and _refused_as_still_processing(gateway_message):
        return InputFileNotReadyError(message, status_code=status, code=code)
    if status in RETRYABLE_STATUSES or status >= 500:
        return RetryableGatewayError(
            message,
            status_code=status,
            code=code,
            retry_after=parse_retry_after(response),
            outcome_unknown=status >= 500 and status != 501,
        )
    if status == 413:
        return RejectedByGatewayError(
            message + " (the gateway refuses a body this large: Kong's max_request_body_size is "
            "often far below 200 MB; run the job with --max-batch-bytes below the gateway's limit "
            "so each shard's upload fits)",
            status_code=status,
            code=code,
        )
    if status in (401, 403):
        return AuthenticationError(
            message + " (check GATEWAY_API_KEY and GATEWAY_API_KEY_HEADER on the worker)",
            status_code=status,
            code=code,
        )
    if collection_route and status in (404, 405, 501):
        return RouteNotSupportedError(message, status_code=status, code=code)
    if status == 404:
        return NotFoundError(message, status_code=status, code=code)
    return RejectedByGatewayError(message, status_code=status, code=code)


def _refused_as_still_processing(gateway_message: str) -> bool:
    found = _FILE_STATE_REFUSAL.search(gateway_message)
    return found is not None and found["state"].strip().lower() in _FILE_STATES_STILL_PROCESSING


def is_api_error_body(response: httpx.Response) -> bool:
    """True when the answer is the API's own error object ({"error": {...}}).

    Tells a 404 for a missing object (the route exists and answered) from a 404
    for a missing route (Kong's {"message": "no Route matched ..."}, an HTML page).
    """
    try:
        body = json.loads(response.text)
    except (json.JSONDecodeError, httpx.ResponseNotRead):
        return False
    return isinstance(body, dict) and isinstance(body.get("error"), dict)


def error_for_transport(
    exc: httpx.TransportError, *, operation: str, url: str, secrets: Collection[str] = ()
) -> GatewayError:
    kind = type(exc).__name__
    detail = printable(str(exc) or "no detail")
    return GatewayUnreachableError(
        redact(
            f"{operation}: no answer from the gateway at {url} ({kind}: {detail}); "
            "is GATEWAY_URL right and the gateway running?",
            secrets,
        ),
        outcome_unknown=not isinstance(exc, _NOT_SENT),
        timed_out=isinstance(exc, httpx.TimeoutException) and not isinstance(exc, _NOT_SENT),
    )
