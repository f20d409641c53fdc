"""HTTP outcomes become typed errors with readable, secret-free messages."""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest
import respx

from gateway.client import GatewayClient
from gateway.errors import (
    AuthenticationError,
    GatewayError,
    GatewayUnreachableError,
    NotFoundError,
    RejectedByGatewayError,
    RetryableGatewayError,
    RouteNotSupportedError,
    error_for_response,
    error_for_transport,
)
from gateway.redaction import REDACTED
from gateway.settings import Dialect, GatewaySettings
from tests.gateway.helpers import (
    API_KEY,
    BASE_URL,
    BATCH_ID,
    assert_secret_free,
    client_for,
    settings,
)

BATCH_URL = f"{BASE_URL}/batches/{BATCH_ID}"
OPENAI_400 = {
    "error": {
        "message": "The input file is not valid JSONL: line 3.",
        "type": "invalid_request_error",
        "param": "input_file_id",
        "code": "invalid_jsonl",
    }
}
NGINX_502 = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    "</body>\r\n</html>\r\n"
)


async def _get_batch_error(answer: httpx.Response, **setting_changes) -> GatewayError:
    with respx.mock(assert_all_called=True) as mock:
        mock.get(BATCH_URL).mock(return_value=answer)
        async with client_for(settings(**setting_changes)) as client:
            with pytest.raises(GatewayError) as caught:
                await client.get_batch(BATCH_ID)
    assert_secret_free(caught.value)
    return caught.value


@pytest.mark.parametrize("status", [408, 409, 425, 429, 500, 502, 503, 504])
async def test_transient_statuses_are_retryable_with_retry_after_seconds(status):
    error = await _get_batch_error(
        httpx.Response(
            status, json={"error": {"message": "slow down"}}, headers={"Retry-After": "7"}
        )
    )
    assert isinstance(error, RetryableGatewayError)
    assert not isinstance(error, GatewayUnreachableError)
    assert error.retryable is True
    assert error.status_code == status
    assert error.retry_after == 7.0
    assert str(status) in str(error) and "get batch" in str(error) and "slow down" in str(error)


async def test_retry_after_ms_is_parsed_and_preferred():
    error = await _get_batch_error(
        httpx.Response(429, headers={"retry-after-ms": "1500", "retry-after": "2"})
    )
    assert error.retry_after == 1.5


async def test_retry_after_http_date_is_parsed():
    when = datetime.now(UTC) + timedelta(seconds=120)
    error = await _get_batch_error(
        httpx.Response(503, headers={"Retry-After": format_datetime(when, usegmt=True)})
    )
    assert error.retry_after is not None and 100 <= error.retry_after <= 121


@pytest.mark.parametrize("headers", [{}, {"Retry-After": "soon"}, {"Retry-After": "inf"}])
async def test_retry_after_absent_or_unusable_is_none(headers):
    error = await _get_batch_error(httpx.Response(429, headers=headers))
    assert isinstance(error, RetryableGatewayError)
    assert error.retry_after is None


async def test_negative_retry_after_is_zero():
    error = await _get_batch_error(httpx.Response(429, headers={"Retry-After": "-3"}))
    assert error.retry_after == 0.0


async def test_400_is_rejected_with_the_openai_message_and_code():
    error = await _get_batch_error(httpx.Response(400, json=OPENAI_400))
    assert type(error) is RejectedByGatewayError
    assert error.retryable is False
    assert error.status_code == 400
    assert error.code == "invalid_jsonl"
    assert "The input file is not valid JSONL: line 3." in str(error)
    assert error.message == str(error)


async def test_400_without_code_falls_back_to_type():
    body = {"error": {"message": "bad", "type": "invalid_request_error"}}
    error = await _get_batch_error(httpx.Response(400, json=body))
    assert error.code == "invalid_request_error"


@pytest.mark.parametrize(
    "body",
    [{"message": "no Route matched with those values"}, {"error": "plain string error"}],
    ids=["kong-style", "string-error"],
)
async def test_other_json_error_shapes_keep_their_message(body):
    error = await _get_batch_error(httpx.Response(404, json=body))
    expected = body.get("message") or body["error"]
    assert expected in str(error)


@pytest.mark.parametrize("status", [401, 403])
async def test_auth_failures(status):
    body = {"message": "Invalid authentication credentials"}
    error = await _get_batch_error(httpx.Response(status, json=body))
    assert isinstance(error, AuthenticationError)
    assert isinstance(error, RejectedByGatewayError)
    assert error.retryable is False
    assert "Invalid authentication credentials" in str(error)
    assert "GATEWAY_API_KEY" in str(error)


async def test_gateway_echoing_the_key_is_redacted():
    body = {"error": {"message": f"Incorrect API key provided: {API_KEY}.", "code": "bad_key"}}
    error = await _get_batch_error(httpx.Response(401, json=body))
    assert f"Incorrect API key provided: {REDACTED}." in str(error)


async def test_a_short_key_is_redacted_too():
    short_key = "k3y9"
    body = {"error": {"message": f"unknown consumer key {short_key}"}}
    error = await _get_batch_error(httpx.Response(401, json=body), api_key=short_key)
    assert_secret_free(error, short_key)
    assert f"unknown consumer key {REDACTED}" in str(error)


async def test_short_extra_header_values_are_masked_too():
    # The settings cannot tell a tenant name from a short token: both are masked.
    gateway_settings = GatewaySettings.from_env(
        {"GATEWAY_URL": BASE_URL, "GATEWAY_EXTRA_HEADERS": '{"X-Tenant": "acme"}'}
    )
    with respx.mock() as mock:
        mock.get(BATCH_URL).respond(403, text="tenant acme may not list batches")
        async with client_for(gateway_settings) as client:
            with pytest.raises(AuthenticationError) as caught:
                await client.get_batch(BATCH_ID)
    assert_secret_free(caught.value, "acme")
    assert f"tenant {REDACTED} may not list batches" in str(caught.value)


async def test_a_key_quoted_escaped_or_url_encoded_is_masked():
    key = 'sk-"odd"/key+1'
    body = {"error": {"message": f"no key {key!r}, none at ?key=sk-%22odd%22%2Fkey%2B1"}}
    error = await _get_batch_error(httpx.Response(401, json=body), api_key=key)
    assert_secret_free(error, key, "sk-%22odd%22%2Fkey%2B1")
    assert f"no key '{REDACTED}', none at ?key={REDACTED}" in str(error)


async def test_secret_extra_header_value_is_redacted():
    token = "tenant-token-5e1d7a"
    gateway_settings = GatewaySettings.from_env(
        {"GATEWAY_URL": BASE_URL, "GATEWAY_EXTRA_HEADERS": f'{{"X-Tenant-Token": "{token}"}}'}
    )
    with respx.mock() as mock:
        mock.get(BATCH_URL).respond(400, text=f"bad header X-Tenant-Token={token}")
        async with client_for(gateway_settings) as client:
            with pytest.raises(RejectedByGatewayError) as caught:
                await client.get_batch(BATCH_ID)
    assert_secret_free(caught.value, token)
    assert f"bad header X-Tenant-Token={REDACTED}" in str(caught.value)


async def test_404_on_get_batch_is_not_found():
    body = {"error": {"message": "No batch found with id 'x'", "code": "not_found"}}
    error = await _get_batch_error(httpx.Response(404, json=body))
    assert type(error) is NotFoundError
    assert error.status_code == 404
    assert "No batch found" in str(error)


@pytest.mark.parametrize("status", [404, 405])
@pytest.mark.parametrize("operation", ["list_batches", "list_files", "cancel_batch"])
async def test_404_405_on_optional_routes_is_route_not_supported(status, operation):
    with respx.mock(assert_all_called=True) as mock:
        mock.route(url__startswith=BASE_URL).respond(
            status, json={"message": "no Route matched with those values"}
        )
        async with client_for(settings()) as client:
            with pytest.raises(RouteNotSupportedError) as caught:
                if operation == "cancel_batch":
                    await client.cancel_batch(BATCH_ID)
                else:
                    await getattr(client, operation)()
    assert caught.value.status_code == status
    assert caught.value.retryable is False
    assert "no Route matched" in str(caught.value)
    assert_secret_free(caught.value)


async def test_html_error_page_gives_a_readable_message():
    error = await _get_batch_error(
        httpx.Response(502, text=NGINX_502, headers={"content-type": "text/html"})
    )
    assert isinstance(error, RetryableGatewayError)
    message = str(error)
    assert "502 Bad Gateway" in message
    assert "<" not in message and "\r" not in message and "\n" not in message
    assert len(message) < 400


async def test_plain_text_error_body_is_kept():
    error = await _get_batch_error(httpx.Response(400, text="upstream said: nope"))
    assert "upstream said: nope" in str(error)


async def test_empty_error_body_uses_the_reason_phrase():
    error = await _get_batch_error(httpx.Response(503))
    assert "503 Service Unavailable" in str(error)


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(200, text="<html>maintenance</html>"),
        httpx.Response(200, text=f"oops {API_KEY}"),
        httpx.Response(200, json={"status": "completed"}),
        httpx.Response(200, json={"id": BATCH_ID, "status": "exploded"}),
    ],
    ids=["html", "echoes-key", "missing-id", "bad-status"],
)
async def test_200_with_a_body_that_is_not_a_batch(answer):
    error = await _get_batch_error(answer)
    # A proxy's maintenance page or a half-sent body passes; the job's timeouts bound it.
    assert type(error) is RetryableGatewayError
    assert error.retryable is True
    assert error.status_code == 200
    assert "get batch" in str(error)
    assert "not a Batch" in str(error)


async def test_200_with_a_bad_status_names_the_field():
    error = await _get_batch_error(httpx.Response(200, json={"id": BATCH_ID, "status": "exploded"}))
    assert "status" in str(error)


@pytest.mark.parametrize(
    "exc",
    [
        httpx.ConnectError("[Errno 111] Connection refused"),
        httpx.ReadTimeout(""),
        httpx.ConnectTimeout("timed out"),
        httpx.RemoteProtocolError("Server disconnected without sending a response."),
    ],
    ids=["refused", "read-timeout", "connect-timeout", "disconnected"],
)
@pytest.mark.parametrize("dialect", list(Dialect))
async def test_no_answer_is_unreachable_and_retryable(exc, dialect):
    with respx.mock() as mock:
        mock.route(url__startswith=BASE_URL).mock(side_effect=exc)
        async with client_for(settings(dialect)) as client:
            with pytest.raises(GatewayUnreachableError) as caught:
                await client.get_batch(BATCH_ID)
    error = caught.value
    assert isinstance(error, RetryableGatewayError)
    assert error.retryable is True
    assert str(client.settings.base_url) in str(error)
    assert f"/batches/{BATCH_ID}" in str(error)
    assert type(exc).__name__ in str(error)
    assert "get batch" in str(error)
    assert_secret_free(error)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_real_connection_refused_names_the_url():
    url = f"http://127.0.0.1:{_closed_port()}"
    gateway_settings = GatewaySettings(base_url=url, api_key=API_KEY)
    async with GatewayClient(gateway_settings) as client:
        with pytest.raises(GatewayUnreachableError) as caught:
            await client.get_batch(BATCH_ID)
    assert f"{url}/batches/{BATCH_ID}" in str(caught.value)
    assert "ConnectError" in str(caught.value)
    assert_secret_free(caught.value)


async def test_injected_http_client_is_not_closed_by_the_gateway_client():
    async with httpx.AsyncClient() as http:
        async with GatewayClient(settings(), http=http):
            pass
        assert not http.is_closed


@pytest.mark.parametrize(
    ("exc", "timed_out"),
    [
        (httpx.ReadTimeout("read timed out"), True),
        (httpx.WriteTimeout("write timed out"), True),
        (httpx.ConnectTimeout("connect timed out"), False),
        (httpx.RemoteProtocolError("server disconnected"), False),
    ],
)
def test_a_transport_failure_says_whether_the_answer_timed_out(
    exc: httpx.TransportError, timed_out: bool
) -> None:
    error = error_for_transport(exc, operation="create batch", url="http://gw/batches")
    assert error.timed_out is timed_out


@pytest.mark.parametrize(("status", "timed_out"), [(504, True), (408, True), (502, False)])
def test_a_gateway_timeout_answer_says_the_answer_timed_out(status: int, timed_out: bool) -> None:
    response = httpx.Response(status, json={"error": {"message": "x"}})
    assert error_for_response(response, operation="create batch").timed_out is timed_out
