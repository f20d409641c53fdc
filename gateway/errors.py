"""The one place that turns HTTP outcomes into meaningful exceptions.

The client never retries: Temporal's retry policies do. Each error says whether
a retry can help, and how long the gateway asked us to wait.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

RETRYABLE_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


class GatewayError(Exception):
    """A failed call to the gateway."""

    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        code: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.code = code
        self.retry_after = retry_after


class RetryableGatewayError(GatewayError):
    """Worth another try: 408/409/429/5xx, connection failures, timeouts."""

    retryable = True


class GatewayUnreachableError(RetryableGatewayError):
    """No HTTP answer at all: connection refused, dropped, or timed out."""


class RejectedByGatewayError(GatewayError):
    """A 4xx that no retry will fix; carries the gateway's own message."""


class AuthenticationError(RejectedByGatewayError):
    """401/403: the key is missing, wrong, or lacks permission."""


class NotFoundError(RejectedByGatewayError):
    """404 on an object: the id does not exist (or the route does not)."""


class RouteNotSupportedError(RejectedByGatewayError):
    """404/405 on a list or cancel route: the gateway does not expose it (Kong may not)."""


def parse_retry_after(response: httpx.Response) -> float | None:
    raw = response.headers.get("retry-after-ms")
    if raw:
        try:
            return max(0.0, float(raw) / 1000.0)
        except ValueError:
            pass
    raw = response.headers.get("retry-after")
    if raw:
        try:
            return max(0.0, float(raw))
        except ValueError:
            return None
    return None


def _gateway_message(response: httpx.Response) -> tuple[str, str | None]:
    text = response.text[:2000] if not response.is_stream_consumed else ""
    try:
        body: Any = json.loads(text) if text else None
    except json.JSONDecodeError:
        body = None
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
    return (text.strip() or response.reason_phrase or "no body"), None


def error_for_response(
    response: httpx.Response, *, operation: str, collection_route: bool = False
) -> GatewayError:
    """Classify a non-2xx answer; the response body must already be read."""
    status = response.status_code
    gateway_message, code = _gateway_message(response)
    message = f"{operation}: gateway answered {status} {response.reason_phrase}: {gateway_message}"
    if status in RETRYABLE_STATUSES or status >= 500:
        return RetryableGatewayError(
            message, status_code=status, code=code, retry_after=parse_retry_after(response)
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


def error_for_transport(exc: httpx.TransportError, *, operation: str, url: str) -> GatewayError:
    kind = type(exc).__name__
    return GatewayUnreachableError(
        f"{operation}: no answer from the gateway at {url} ({kind}: {exc or 'no detail'}); "
        "is GATEWAY_URL right and the gateway running?"
    )
