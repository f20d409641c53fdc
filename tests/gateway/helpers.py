"""Fixtures and helpers shared by the gateway tests.

The bodies below are copied from /work/shared/reference/kong-azure-batches-howto.md
(real Kong + Azure answers), quirks included.
"""

from __future__ import annotations

import copy
import traceback
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from gateway.client import GatewayClient
from gateway.settings import Dialect, GatewaySettings

BASE_URL = "http://gateway.test:8000"
API_KEY = "sk-test-DO-NOT-LEAK-4f9c2a"
FILE_ID = "file-da4364d8fd714dd9b29706b91236ab02"
OUTPUT_FILE_ID = "file-93d91f55-0418-abcd-1234-81f4bb334951"
BATCH_ID = "batch_379f1007-8057-4f43-be38-12f3d456c7da"

_UPLOADED_FILE: dict[str, Any] = {
    "status": "processed",
    "bytes": 1648,
    "purpose": "batch",
    "filename": "batch.jsonl",
    "id": FILE_ID,
    "created_at": 1761817541,
    "object": "file",
}

_VALIDATING_BATCH: dict[str, Any] = {
    "cancelled_at": None,
    "cancelling_at": None,
    "completed_at": None,
    "completion_window": "24h",
    "created_at": 1761817562,
    "error_file_id": "",
    "expired_at": None,
    "expires_at": 1761903959,
    "failed_at": None,
    "finalizing_at": None,
    "id": BATCH_ID,
    "in_progress_at": None,
    "input_file_id": FILE_ID,
    "errors": None,
    "metadata": None,
    "object": "batch",
    "output_file_id": "",
    "request_counts": {"total": 0, "completed": 0, "failed": 0},
    "status": "validating",
    "endpoint": "",
}

_COMPLETED_BATCH: dict[str, Any] = {
    "cancelled_at": None,
    "cancelling_at": None,
    "completed_at": 1761817685,
    "completion_window": "24h",
    "created_at": 1761817562,
    "error_file_id": None,
    "expired_at": None,
    "expires_at": 1761903959,
    "failed_at": None,
    "finalizing_at": 1761817662,
    "id": BATCH_ID,
    "in_progress_at": None,
    "input_file_id": FILE_ID,
    "errors": None,
    "metadata": None,
    "object": "batch",
    "output_file_id": OUTPUT_FILE_ID,
    "request_counts": {"total": 5, "completed": 5, "failed": 0},
    "status": "completed",
    "endpoint": "/v1/chat/completions",
}


def uploaded_file(**changes: Any) -> dict[str, Any]:
    return {**copy.deepcopy(_UPLOADED_FILE), **changes}


def validating_batch(**changes: Any) -> dict[str, Any]:
    return {**copy.deepcopy(_VALIDATING_BATCH), **changes}


def completed_batch(**changes: Any) -> dict[str, Any]:
    return {**copy.deepcopy(_COMPLETED_BATCH), **changes}


def settings(
    dialect: Dialect = Dialect.KONG, *, api_key: str | None = API_KEY, **more: Any
) -> GatewaySettings:
    return GatewaySettings(base_url=BASE_URL, dialect=dialect, api_key=api_key, **more)


# Building an SSL context costs ~25 ms; one shared context keeps the suite fast.
# (Tests that use GatewayClient's own httpx client construct it directly.)
_SSL_CONTEXT = httpx.create_ssl_context()


@asynccontextmanager
async def client_for(gateway_settings: GatewaySettings) -> AsyncIterator[GatewayClient]:
    async with (
        httpx.AsyncClient(verify=_SSL_CONTEXT, timeout=gateway_settings.timeout_seconds) as http,
        GatewayClient(gateway_settings, http=http) as client,
    ):
        yield client


def assert_secret_free(exc: BaseException, *secrets: str) -> None:
    """No secret in the message, repr, args, or anywhere in the cause chain."""
    secrets = secrets or (API_KEY,)
    rendered = "".join(traceback.format_exception(exc)) + repr(exc) + repr(exc.args)
    for secret in secrets:
        assert secret not in rendered, f"secret leaked into {type(exc).__name__}: {rendered}"


def parse_multipart(request: httpx.Request) -> dict[str, tuple[str | None, bytes]]:
    """field name -> (filename, content) of a multipart/form-data request body."""
    content_type = request.headers["content-type"]
    assert content_type.startswith("multipart/form-data"), content_type
    boundary = content_type.split("boundary=", 1)[1].strip('"').encode()
    body = request.content
    fields: dict[str, tuple[str | None, bytes]] = {}
    parts = body.split(b"--" + boundary)
    assert parts[-1].strip() == b"--", "multipart body does not end with the closing boundary"
    for part in parts[1:-1]:
        assert part.startswith(b"\r\n") and part.endswith(b"\r\n")
        head, _, content = part[2:-2].partition(b"\r\n\r\n")
        disposition = next(
            line
            for line in head.decode().split("\r\n")
            if line.lower().startswith("content-disposition")
        )
        attrs = dict(
            item.strip().split("=", 1) for item in disposition.split(";")[1:] if "=" in item
        )
        name = attrs["name"].strip('"')
        filename = attrs["filename"].strip('"') if "filename" in attrs else None
        fields[name] = (filename, content)
    return fields
