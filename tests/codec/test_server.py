"""The codec server: protocol, CORS for the Web UI, bearer token, namespaces, errors."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.contrib.pydantic import pydantic_data_converter

from codec import AesGcmCodec, key_id
from codec.server import app_from_env, build_app, is_loopback
from tests.codec.helpers import KEY, KEY_B64, OLD_KEY, serve_in_thread

UI = "http://localhost:8233"
SECRET = "the launch code is 0000"


def body(*payloads: Payload) -> dict[str, object]:
    return json_format.MessageToDict(Payloads(payloads=payloads))


def payloads_of(response: httpx.Response) -> list[Payload]:
    assert response.headers["content-type"] == "application/json"
    return list(json_format.ParseDict(response.json(), Payloads()).payloads)


def plain(text: str = SECRET) -> Payload:
    return pydantic_data_converter.payload_converter.to_payloads([text])[0]


@pytest_asyncio.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    app = build_app(AesGcmCodec(KEY))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://codec"
    ) as http:
        yield http


async def test_encode_then_decode_round_trip(client):
    encoded = await client.post("/encode", json=body(plain()))
    assert encoded.status_code == 200
    [sealed] = payloads_of(encoded)
    assert sealed.metadata["encoding"] == b"binary/encrypted"
    assert SECRET not in encoded.text
    assert base64.b64encode(SECRET.encode()).decode()[:12] not in encoded.text

    decoded = await client.post("/decode", json=encoded.json())
    assert decoded.status_code == 200
    assert payloads_of(decoded) == [plain()]


async def test_wire_format_is_protobuf_json_with_base64_fields(client):
    sealed = (await AesGcmCodec(KEY).encode([plain()]))[0]
    wire = {
        "payloads": [
            {
                "metadata": {k: base64.b64encode(v).decode() for k, v in sealed.metadata.items()},
                "data": base64.b64encode(sealed.data).decode(),
            }
        ]
    }
    decoded = (await client.post("/decode", json=wire)).json()
    [out] = decoded["payloads"]
    assert base64.b64decode(out["metadata"]["encoding"]) == b"json/plain"
    assert base64.b64decode(out["data"]) == f'"{SECRET}"'.encode()


async def test_decode_passes_plaintext_through_and_accepts_empty_lists(client):
    assert payloads_of(await client.post("/decode", json=body(plain()))) == [plain()]
    assert (await client.post("/decode", json={"payloads": []})).json() == {}


async def test_namespace_prefixed_routes(client):
    encoded = await client.post("/default/encode", json=body(plain()))
    decoded = await client.post("/default/decode", json=encoded.json())
    assert payloads_of(decoded) == [plain()]


async def test_unknown_key_id_is_a_422_naming_it(client):
    sealed = (await AesGcmCodec(OLD_KEY).encode([plain()]))[0]
    response = await client.post("/decode", json=body(sealed))
    assert response.status_code == 422
    assert f"key id {key_id(OLD_KEY)}" in response.json()["detail"]


@pytest.mark.parametrize("raw", [b"not json", b'{"payloads": 3}', b'{"nope": []}', b"\xff"])
async def test_malformed_body_is_a_400(client, raw):
    response = await client.post(
        "/decode", content=raw, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400


async def test_cors_preflight_from_the_web_ui(client):
    response = await client.options(
        "/decode",
        headers={
            "Origin": UI,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,x-namespace,authorization",
        },
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == UI
    assert "POST" in response.headers["access-control-allow-methods"]
    allowed = response.headers["access-control-allow-headers"].lower()
    for header in ("content-type", "x-namespace", "authorization"):
        assert header in allowed
    assert response.headers["access-control-allow-credentials"] == "true"


async def test_cors_lets_a_cloud_hosted_ui_reach_a_local_codec_server():
    app = build_app(AesGcmCodec(KEY), cors_origins=["https://cloud.temporal.io"])
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://codec") as http:
        response = await http.options(
            "/decode",
            headers={
                "Origin": "https://cloud.temporal.io",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Private-Network": "true",
            },
        )
    assert response.status_code == 200
    assert response.headers["access-control-allow-private-network"] == "true"


async def test_cors_refuses_other_origins(client):
    response = await client.options(
        "/decode",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert response.status_code == 400
    assert "access-control-allow-origin" not in response.headers
    posted = await client.post(
        "/decode", json=body(plain()), headers={"Origin": "https://evil.example"}
    )
    assert "access-control-allow-origin" not in posted.headers


async def test_cors_headers_on_the_actual_response(client):
    response = await client.post(
        "/decode", json=body(plain()), headers={"Origin": UI, "X-Namespace": "default"}
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == UI


async def test_token_required_when_configured():
    app = app_from_env(
        AesGcmCodec(KEY), {"CODEC_SERVER_TOKEN": "s3cret", "BATCH_CODEC_KEY": KEY_B64}
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://codec") as http:
        missing = await http.post("/decode", json=body(plain()), headers={"Origin": UI})
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"] == "Bearer"
        # The browser can read the 401 (and show why) only with CORS headers on it.
        assert missing.headers["access-control-allow-origin"] == UI

        for wrong in ("Bearer nope", "Basic s3cret", "s3cret", "Bearer s3cret2"):
            response = await http.post(
                "/encode", json=body(plain()), headers={"Authorization": wrong}
            )
            assert response.status_code == 401, wrong

        ok = await http.post(
            "/decode", json=body(plain()), headers={"Authorization": "Bearer s3cret"}
        )
        assert ok.status_code == 200

        # Browsers send no Authorization on a preflight: it must pass without one.
        preflight = await http.options(
            "/decode",
            headers={
                "Origin": UI,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type",
            },
        )
        assert preflight.status_code == 200


async def test_cors_origins_and_namespaces_from_the_environment():
    app = app_from_env(
        AesGcmCodec(KEY),
        {
            "CODEC_SERVER_CORS_ORIGINS": "https://temporal.example.com, http://127.0.0.1:8233",
            "CODEC_SERVER_NAMESPACES": "batches",
        },
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://codec") as http:
        preflight = {"Access-Control-Request-Method": "POST"}
        allowed = await http.options(
            "/decode", headers={"Origin": "http://127.0.0.1:8233", **preflight}
        )
        assert allowed.status_code == 200
        default_ui = await http.options("/decode", headers={"Origin": UI, **preflight})
        assert default_ui.status_code == 400

        served = await http.post("/decode", json=body(plain()), headers={"X-Namespace": "batches"})
        assert served.status_code == 200
        assert (await http.post("/batches/decode", json=body(plain()))).status_code == 200
        other = await http.post("/decode", json=body(plain()), headers={"X-Namespace": "prod"})
        assert other.status_code == 403
        assert "prod" in other.json()["detail"]
        assert (await http.post("/prod/decode", json=body(plain()))).status_code == 403
        assert (await http.post("/decode", json=body(plain()))).status_code == 403


async def test_over_real_http():
    app = build_app(AesGcmCodec(KEY), token="tok")
    with serve_in_thread(app) as url:
        async with httpx.AsyncClient(base_url=url, timeout=10) as http:
            assert (await http.get("/healthz")).json() == {"status": "ok"}
            auth = {"Authorization": "Bearer tok", "Origin": UI}
            encoded = await http.post("/encode", json=body(plain()), headers=auth)
            assert encoded.status_code == 200
            assert SECRET not in encoded.text
            decoded = await http.post("/decode", json=encoded.json(), headers=auth)
            assert payloads_of(decoded) == [plain()]
            assert decoded.headers["access-control-allow-origin"] == UI
            assert (await http.post("/decode", json=encoded.json())).status_code == 401


def _serve_exit(host: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "codec", "serve", "--host", host, "--port", "1"],
        cwd=Path(__file__).resolve().parents[2],
        env={**os.environ, "BATCH_CODEC_KEY": KEY_B64, "CODEC_SERVER_TOKEN": "", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_without_a_token_it_refuses_to_serve_beyond_this_machine():
    refused = _serve_exit("0.0.0.0")
    assert refused.returncode == 2
    assert "CODEC_SERVER_TOKEN is not set and --host 0.0.0.0 is not a loopback" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost", "10.0.0.5"])
def test_loopback_addresses_are_told_apart(host):
    assert is_loopback(host) is (host != "10.0.0.5")


def test_an_explicit_flag_serves_a_container_without_a_token():
    refused = _serve_exit("0.0.0.0", BATCH_CODEC_KEY="")
    assert "BATCH_CODEC_KEY is not set" in refused.stderr, "the token check comes after the key's"
    wrong_host = subprocess.run(
        [
            sys.executable,
            "-m",
            "codec",
            "serve",
            "--host",
            "0.0.0.0",
            "--without-token-on",
            "10.1.1.1",
        ],
        cwd=Path(__file__).resolve().parents[2],
        env={**os.environ, "BATCH_CODEC_KEY": KEY_B64, "CODEC_SERVER_TOKEN": ""},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert wrong_host.returncode == 2 and "not a loopback" in wrong_host.stderr
