"""Which URL, query and headers each dialect sends; settings read from the environment."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest
import respx

from gateway.client import GatewayClient
from gateway.redaction import REDACTED, redact
from gateway.settings import (
    DEFAULT_AZURE_API_VERSION,
    DEFAULT_GATEWAY_URL,
    Dialect,
    GatewaySettings,
)
from tests.gateway.helpers import (
    API_KEY,
    BASE_URL,
    BATCH_ID,
    FILE_ID,
    client_for,
    completed_batch,
    settings,
    uploaded_file,
)

AUTH_HEADERS = ("apikey", "authorization", "api-key")

Call = Callable[[GatewayClient, Path], Awaitable[object]]


async def _upload(client: GatewayClient, tmp_path: Path) -> object:
    source = tmp_path / "in.jsonl"
    source.write_bytes(b"{}\n")
    return await client.upload_file(source, filename="in.jsonl")


async def _create(client: GatewayClient, tmp_path: Path) -> object:
    return await client.create_batch(input_file_id=FILE_ID, endpoint="/v1/chat/completions")


async def _get(client: GatewayClient, tmp_path: Path) -> object:
    return await client.get_batch(BATCH_ID)


async def _download(client: GatewayClient, tmp_path: Path) -> object:
    return await client.download_file(FILE_ID, tmp_path / "out.jsonl")


async def _list(client: GatewayClient, tmp_path: Path) -> object:
    return await client.list_batches()


# (call, method, route path without dialect prefix, answer)
OPERATIONS: list[tuple[Call, str, str, httpx.Response]] = [
    (_upload, "POST", "/files", httpx.Response(201, json=uploaded_file())),
    (_create, "POST", "/batches", httpx.Response(200, json=completed_batch())),
    (_get, "GET", f"/batches/{BATCH_ID}", httpx.Response(200, json=completed_batch())),
    (_download, "GET", f"/files/{FILE_ID}/content", httpx.Response(200, content=b"{}\n")),
    (_list, "GET", "/batches", httpx.Response(200, json={"data": [], "has_more": False})),
]
OPERATION_IDS = ["upload", "create", "get", "download", "list"]


async def _one_request(
    gateway_settings: GatewaySettings,
    call: Call,
    method: str,
    url: str,
    answer: httpx.Response,
    tmp_path: Path,
) -> httpx.Request:
    with respx.mock(assert_all_called=True, assert_all_mocked=True) as mock:
        route = mock.route(method=method, url__startswith=url).mock(return_value=answer)
        async with client_for(gateway_settings) as client:
            await call(client, tmp_path)
        assert route.call_count == 1
        request: httpx.Request = route.calls.last.request
    return request


@pytest.mark.parametrize(("call", "method", "path", "answer"), OPERATIONS, ids=OPERATION_IDS)
async def test_kong_routes_at_root_with_apikey_header(call, method, path, answer, tmp_path):
    request = await _one_request(settings(Dialect.KONG), call, method, BASE_URL, answer, tmp_path)
    assert request.url.path == path
    assert request.url.host == "gateway.test" and request.url.port == 8000
    assert "api-version" not in request.url.params
    assert request.headers["apikey"] == API_KEY
    assert "authorization" not in request.headers
    assert "api-key" not in request.headers


@pytest.mark.parametrize(("call", "method", "path", "answer"), OPERATIONS, ids=OPERATION_IDS)
async def test_kong_without_key_sends_no_auth_header(call, method, path, answer, tmp_path):
    gateway_settings = settings(Dialect.KONG, api_key=None)
    request = await _one_request(gateway_settings, call, method, BASE_URL, answer, tmp_path)
    assert request.url.path == path
    for header in AUTH_HEADERS:
        assert header not in request.headers


@pytest.mark.parametrize(("call", "method", "path", "answer"), OPERATIONS, ids=OPERATION_IDS)
async def test_openai_routes_under_v1_with_bearer(call, method, path, answer, tmp_path):
    request = await _one_request(settings(Dialect.OPENAI), call, method, BASE_URL, answer, tmp_path)
    assert request.url.path == "/v1" + path
    assert request.headers["authorization"] == f"Bearer {API_KEY}"
    assert "apikey" not in request.headers
    assert "api-key" not in request.headers
    assert "api-version" not in request.url.params


@pytest.mark.parametrize(("call", "method", "path", "answer"), OPERATIONS, ids=OPERATION_IDS)
async def test_azure_routes_under_openai_with_api_version_and_api_key(
    call, method, path, answer, tmp_path
):
    request = await _one_request(settings(Dialect.AZURE), call, method, BASE_URL, answer, tmp_path)
    assert request.url.path == "/openai" + path
    assert request.url.params["api-version"] == DEFAULT_AZURE_API_VERSION
    assert request.headers["api-key"] == API_KEY
    assert "authorization" not in request.headers
    assert "apikey" not in request.headers


async def test_azure_keeps_api_version_beside_other_query_params(tmp_path):
    gateway_settings = settings(Dialect.AZURE, azure_api_version="2024-10-21")
    answer = httpx.Response(200, json={"data": [], "has_more": False})
    request = await _one_request(gateway_settings, _list, "GET", BASE_URL, answer, tmp_path)
    assert request.url.params["api-version"] == "2024-10-21"
    assert request.url.params["limit"] == "100"


@pytest.mark.parametrize(
    ("dialect", "header", "expected"),
    [
        (Dialect.KONG, "X-Consumer-Key", API_KEY),
        (Dialect.AZURE, "Ocp-Apim-Subscription-Key", API_KEY),
        (Dialect.KONG, "Authorization", f"Bearer {API_KEY}"),
        (Dialect.OPENAI, "api-key", API_KEY),
    ],
)
async def test_api_key_header_override(dialect, header, expected, tmp_path):
    gateway_settings = GatewaySettings.from_env(
        {
            "GATEWAY_URL": BASE_URL,
            "GATEWAY_DIALECT": dialect.value,
            "GATEWAY_API_KEY": API_KEY,
            "GATEWAY_API_KEY_HEADER": header,
        }
    )
    answer = httpx.Response(200, json=completed_batch())
    request = await _one_request(gateway_settings, _get, "GET", BASE_URL, answer, tmp_path)
    assert request.headers[header] == expected
    # The dialect's own header is not sent as well.
    for other in AUTH_HEADERS:
        if other != header.lower():
            assert other not in request.headers


async def test_extra_headers_from_env_are_sent(tmp_path):
    extra = {"X-Tenant": "acme", "Kong-Debug": "1"}
    gateway_settings = GatewaySettings.from_env(
        {"GATEWAY_URL": BASE_URL, "GATEWAY_EXTRA_HEADERS": json.dumps(extra)}
    )
    for call, method, path, answer in OPERATIONS:
        request = await _one_request(gateway_settings, call, method, BASE_URL, answer, tmp_path)
        assert request.url.path == path
        assert request.headers["X-Tenant"] == "acme"
        assert request.headers["Kong-Debug"] == "1"
        for header in AUTH_HEADERS:
            assert header not in request.headers


# -- GatewaySettings.from_env ----------------------------------------------


def test_from_env_defaults():
    loaded = GatewaySettings.from_env({})
    assert loaded.base_url == DEFAULT_GATEWAY_URL
    assert loaded.dialect is Dialect.KONG
    assert loaded.api_key is None
    assert loaded.api_key_header is None
    assert loaded.extra_headers == {}
    assert loaded.azure_api_version == DEFAULT_AZURE_API_VERSION
    assert loaded.timeout_seconds == 60.0


def test_from_env_reads_every_variable():
    loaded = GatewaySettings.from_env(
        {
            "GATEWAY_URL": "https://example.openai.azure.com/",
            "GATEWAY_DIALECT": "Azure",
            "GATEWAY_API_KEY": API_KEY,
            "GATEWAY_API_KEY_HEADER": "X-Key",
            "GATEWAY_EXTRA_HEADERS": '{"X-A": "b"}',
            "AZURE_API_VERSION": "2024-10-21",
            "GATEWAY_TIMEOUT_SECONDS": "12.5",
        }
    )
    assert loaded.base_url == "https://example.openai.azure.com"  # trailing slash dropped
    assert loaded.dialect is Dialect.AZURE
    assert loaded.api_key is not None and loaded.api_key.get_secret_value() == API_KEY
    assert loaded.api_key_header == "X-Key"
    assert {k: v.get_secret_value() for k, v in loaded.extra_headers.items()} == {"X-A": "b"}
    assert loaded.azure_api_version == "2024-10-21"
    assert loaded.timeout_seconds == 12.5
    # The key stays out of the settings' repr (which ends up in logs).
    assert API_KEY not in repr(loaded) and API_KEY not in str(loaded)


def test_from_env_empty_values_mean_defaults():
    names = (
        "GATEWAY_URL",
        "GATEWAY_DIALECT",
        "GATEWAY_API_KEY",
        "GATEWAY_API_KEY_HEADER",
        "GATEWAY_EXTRA_HEADERS",
        "AZURE_API_VERSION",
        "GATEWAY_TIMEOUT_SECONDS",
    )
    assert GatewaySettings.from_env(dict.fromkeys(names, "")) == GatewaySettings.from_env({})


@pytest.mark.parametrize(
    "raw",
    [
        "{not json",
        '["X-A", "b"]',
        '{"X-A": 1}',
        '"just a string"',
    ],
    ids=["malformed", "array", "non-string-value", "string"],
)
def test_from_env_rejects_bad_extra_headers(raw):
    with pytest.raises(ValueError, match="GATEWAY_EXTRA_HEADERS must be a JSON object"):
        GatewaySettings.from_env({"GATEWAY_EXTRA_HEADERS": raw})


def test_from_env_bad_extra_headers_message_does_not_echo_values():
    secret = "Bearer super-secret-token-123"
    with pytest.raises(ValueError) as caught:
        GatewaySettings.from_env({"GATEWAY_EXTRA_HEADERS": '{"Authorization": "' + secret})
    assert "super-secret-token-123" not in str(caught.value)


@pytest.mark.parametrize("url", ["localhost:8000", "ftp://gateway", "gateway.test"])
def test_from_env_rejects_url_without_http_scheme(url):
    with pytest.raises(ValueError) as caught:
        GatewaySettings.from_env({"GATEWAY_URL": url})
    message = str(caught.value)
    assert "GATEWAY_URL" in message
    assert "http://" in message
    assert repr(url) in message


def test_constructor_rejects_url_without_http_scheme():
    with pytest.raises(ValueError, match="must start with http:// or https://"):
        GatewaySettings(base_url="gateway.test:8000")


def test_from_env_rejects_unknown_dialect_naming_the_choices():
    with pytest.raises(ValueError) as caught:
        GatewaySettings.from_env({"GATEWAY_DIALECT": "litellm-ish"})
    message = str(caught.value)
    assert "GATEWAY_DIALECT" in message
    assert "'litellm-ish'" in message
    for choice in ("kong", "openai", "azure"):
        assert choice in message


@pytest.mark.parametrize("raw", ["soon", "0", "-5", "nan"])
def test_from_env_rejects_bad_timeout(raw):
    with pytest.raises(ValueError, match="GATEWAY_TIMEOUT_SECONDS must be a positive number"):
        GatewaySettings.from_env({"GATEWAY_TIMEOUT_SECONDS": raw})


@pytest.mark.parametrize("key", ["sk-abc\n", "sk-abc\r\n", "sk-\tabc"])
def test_a_key_with_a_control_character_is_refused_without_showing_it(key):
    with pytest.raises(ValueError) as refused:
        GatewaySettings.from_env({"GATEWAY_API_KEY": key + "x"})
    assert "GATEWAY_API_KEY" in str(refused.value)
    assert "sk-" not in str(refused.value)


def test_a_key_with_surrounding_spaces_is_trimmed():
    settings = GatewaySettings.from_env({"GATEWAY_API_KEY": "  sk-abc  "})
    assert settings.api_key is not None and settings.api_key.get_secret_value() == "sk-abc"


def test_secret_values_are_every_secret_the_worker_holds():
    loaded = GatewaySettings.from_env(
        {
            "GATEWAY_API_KEY": API_KEY,
            "GATEWAY_EXTRA_HEADERS": '{"X-Tenant": "acme", "X-Token": "tok-123456"}',
            "TEMPORAL_API_KEY": "tmprl-key",
            "BATCH_CODEC_KEY": "codec-new",
            "BATCH_CODEC_OLD_KEYS": "codec-old-1, codec-old-2",
            "AZURE_API_VERSION": "2024-10-21",
        }
    )
    assert loaded.secret_values() >= {
        API_KEY,
        "acme",
        "tok-123456",
        "tmprl-key",
        "codec-new",
        "codec-old-1",
        "codec-old-2",
    }
    assert "2024-10-21" not in loaded.secret_values()
    assert "codec-old-1" not in repr(loaded)


def test_the_clouds_secrets_and_url_passwords_are_masked_like_the_key():
    service_account = json.dumps({"type": "service_account", "private_key": "-----PRIV-----\n"})
    loaded = GatewaySettings.from_env(
        {
            "GATEWAY_URL": "https://gw-user:gw%2Fpass@gateway.example.com",
            "AWS_ENDPOINT_URL": "http://minio-user:minio-pass@minio:9000",
            "AWS_SECRET_ACCESS_KEY": "aws-secret",
            "AWS_SESSION_TOKEN": "aws-session",
            "AZURE_STORAGE_ACCOUNT_KEY": "az-account-key",
            "AZURE_STORAGE_SAS_TOKEN": "sv=2024&sig=az-sas",
            "AZURE_CLIENT_SECRET": "az-client-secret",
            "GOOGLE_SERVICE_ACCOUNT_KEY": service_account,
            "AWS_ACCESS_KEY_ID": "AKIAPUBLIC",
        }
    )
    secrets = loaded.secret_values()
    assert secrets >= {
        "gw%2Fpass",
        "gw/pass",
        "minio-pass",
        "aws-secret",
        "aws-session",
        "az-account-key",
        "sv=2024&sig=az-sas",
        "az-client-secret",
        service_account,
        "-----PRIV-----\n",
    }
    assert "AKIAPUBLIC" not in secrets, "an access key id is a name, not a secret"
    text = (
        "no answer from the gateway at https://gw-user:gw%2Fpass@gateway.example.com/files; "
        "store said aws-secret; key -----PRIV-----\\n"
    )
    masked = redact(text, secrets)
    assert "gw-user" not in masked and "gw%2Fpass" not in masked
    assert "aws-secret" not in masked and "PRIV" not in masked
    assert masked.startswith(
        f"no answer from the gateway at https://{REDACTED}@gateway.example.com"
    )
