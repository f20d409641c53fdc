"""Upload, download, create, cancel and paging against a mocked gateway."""

from __future__ import annotations

import asyncio
import gzip
import io
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from contracts.batch_status import BatchStatus
from gateway.client import GatewayClient
from gateway.errors import (
    GatewayError,
    GatewayUnreachableError,
    NotFoundError,
    RetryableGatewayError,
)
from gateway.settings import Dialect, GatewaySettings
from tests.gateway.helpers import (
    API_KEY,
    BASE_URL,
    BATCH_ID,
    FILE_ID,
    OUTPUT_FILE_ID,
    assert_secret_free,
    client_for,
    completed_batch,
    parse_multipart,
    settings,
    uploaded_file,
    validating_batch,
)

JSONL = b'{"custom_id": "prod1", "method": "POST", "url": "/v1/chat/completions", "body": {}}\n'
CONTENT_URL = f"{BASE_URL}/files/{OUTPUT_FILE_ID}/content"


def _pattern(size: int) -> bytes:
    """size bytes that are not all alike, so a shuffled or shifted copy shows."""
    block = bytes(range(256)) * 4096  # 1 MiB
    return (block * (size // len(block) + 1))[:size]


# -- upload --------------------------------------------------------------


@pytest.mark.parametrize("status", [200, 201])
async def test_upload_sends_multipart_with_bytes_filename_and_purpose(status, tmp_path):
    source = tmp_path / "local-name.jsonl"
    source.write_bytes(JSONL * 3)
    with respx.mock(assert_all_called=True) as mock:
        route = mock.post(f"{BASE_URL}/files").respond(status, json=uploaded_file())
        async with client_for(settings()) as client:
            file = await client.upload_file(source, filename="batch.jsonl")
    assert file.id == FILE_ID
    assert file.status == "processed"
    request = route.calls.last.request
    fields = parse_multipart(request)
    assert set(fields) == {"file", "purpose"}
    assert fields["purpose"] == (None, b"batch")
    assert fields["file"] == ("batch.jsonl", JSONL * 3)


async def test_upload_custom_purpose(tmp_path):
    source = tmp_path / "x.jsonl"
    source.write_bytes(JSONL)
    with respx.mock() as mock:
        route = mock.post(f"{BASE_URL}/files").respond(200, json=uploaded_file())
        async with client_for(settings()) as client:
            await client.upload_file(source, filename="x.jsonl", purpose="fine-tune")
    assert parse_multipart(route.calls.last.request)["purpose"] == (None, b"fine-tune")


class _ReadSpy(io.RawIOBase):
    """Wraps a binary file and records the size of every read."""

    def __init__(self, inner: io.BufferedReader, reads: list[int | None]) -> None:
        self._inner = inner
        self._reads = reads

    def read(self, size: int | None = -1) -> bytes:
        self._reads.append(size)
        return self._inner.read(size)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._inner.seek(offset, whence)

    def tell(self) -> int:
        return self._inner.tell()

    def fileno(self) -> int:
        return self._inner.fileno()

    def close(self) -> None:
        self._inner.close()
        super().close()


class _SpyPath(type(Path())):  # type: ignore[misc]
    reads: list[int | None]

    def open(self, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        inner = super().open(mode, *args, **kwargs)
        return _ReadSpy(inner, self.reads) if mode == "rb" else inner


async def test_upload_streams_a_large_file_in_chunks(tmp_path):
    size = 5 * 1024 * 1024 + 123
    payload = _pattern(size)
    source = _SpyPath(tmp_path / "big.jsonl")
    source.reads = []
    source.write_bytes(payload)
    with respx.mock() as mock:
        route = mock.post(f"{BASE_URL}/files").respond(201, json=uploaded_file(bytes=size))
        async with client_for(settings()) as client:
            file = await client.upload_file(source, filename="big.jsonl")
    assert file.bytes == size
    request = route.calls.last.request
    assert parse_multipart(request)["file"] == ("big.jsonl", payload)
    # Sent with a length, not chunked, and read from disk a bounded piece at a time.
    assert int(request.headers["content-length"]) == len(request.content)
    reads = source.reads
    assert len(reads) > 10
    assert all(n is not None and 0 < n <= 1024 * 1024 for n in reads), reads[:5]


async def test_upload_failure_is_classified_and_secret_free(tmp_path):
    source = tmp_path / "x.jsonl"
    source.write_bytes(JSONL)
    with respx.mock() as mock:
        mock.post(f"{BASE_URL}/files").respond(413, text="Request Entity Too Large")
        async with client_for(settings()) as client:
            with pytest.raises(GatewayError) as caught:
                await client.upload_file(source, filename="x.jsonl")
    assert caught.value.status_code == 413
    assert caught.value.retryable is False
    assert "upload x.jsonl" in str(caught.value)
    assert "--max-batch-bytes" in str(caught.value), "a 413 names the setting that fixes it"
    assert_secret_free(caught.value)


# -- download ------------------------------------------------------------


def _no_leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


async def test_download_writes_the_body_and_returns_its_size(tmp_path):
    body = _pattern(3 * 1024 * 1024 + 7)
    destination = tmp_path / "out.jsonl"
    with respx.mock(assert_all_called=True) as mock:
        route = mock.get(CONTENT_URL).respond(200, content=body)
        async with client_for(settings()) as client:
            written = await client.download_file(OUTPUT_FILE_ID, destination)
    assert written == len(body)
    assert destination.read_bytes() == body
    assert _no_leftovers(tmp_path) == ["out.jsonl"]
    assert route.calls.last.request.headers["apikey"] == API_KEY


async def test_download_empty_error_file(tmp_path):
    destination = tmp_path / "errors.jsonl"
    with respx.mock() as mock:
        mock.get(CONTENT_URL).respond(200, content=b"")
        async with client_for(settings()) as client:
            assert await client.download_file(OUTPUT_FILE_ID, destination) == 0
    assert destination.exists() and destination.read_bytes() == b""


async def test_download_decodes_gzip_content_encoding(tmp_path):
    body = JSONL * 1000
    destination = tmp_path / "out.jsonl"
    with respx.mock() as mock:
        mock.get(CONTENT_URL).respond(
            200, content=gzip.compress(body), headers={"content-encoding": "gzip"}
        )
        async with client_for(settings()) as client:
            written = await client.download_file(OUTPUT_FILE_ID, destination)
    assert destination.read_bytes() == body
    assert written == len(body)


async def test_download_404_is_not_found_and_writes_nothing(tmp_path):
    destination = tmp_path / "out.jsonl"
    with respx.mock() as mock:
        mock.get(CONTENT_URL).respond(
            404, json={"error": {"message": "No such File object", "code": "not_found"}}
        )
        async with client_for(settings()) as client:
            with pytest.raises(NotFoundError) as caught:
                await client.download_file(OUTPUT_FILE_ID, destination)
    assert "No such File object" in str(caught.value)
    assert f"download file {OUTPUT_FILE_ID}" in str(caught.value)
    assert _no_leftovers(tmp_path) == []
    assert_secret_free(caught.value)


async def test_download_5xx_is_retryable(tmp_path):
    with respx.mock() as mock:
        mock.get(CONTENT_URL).respond(503, headers={"Retry-After": "30"})
        async with client_for(settings()) as client:
            with pytest.raises(RetryableGatewayError) as caught:
                await client.download_file(OUTPUT_FILE_ID, tmp_path / "out.jsonl")
    assert caught.value.retry_after == 30.0
    assert _no_leftovers(tmp_path) == []


async def test_download_shorter_than_content_length_is_truncated_and_retryable(tmp_path):
    destination = tmp_path / "out.jsonl"
    destination.write_bytes(b"an earlier, complete download\n")
    with respx.mock() as mock:
        # respx hands the body over as is, so the declared length stays larger.
        mock.get(CONTENT_URL).respond(200, content=b"x" * 100, headers={"content-length": "1000"})
        async with client_for(settings()) as client:
            with pytest.raises(RetryableGatewayError) as caught:
                await client.download_file(OUTPUT_FILE_ID, destination)
    assert "truncated" in str(caught.value)
    assert "100 of 1000" in str(caught.value)
    # Nothing partial is left looking like a whole file; an older file is untouched.
    assert destination.read_bytes() == b"an earlier, complete download\n"
    assert _no_leftovers(tmp_path) == ["out.jsonl"]


async def test_download_transport_error_midway_is_unreachable(tmp_path):
    class DroppedStream(httpx.AsyncByteStream):
        async def __aiter__(self) -> AsyncIterator[bytes]:
            yield b"first line\n"
            raise httpx.ReadError("connection reset by peer")

    with respx.mock() as mock:
        mock.get(CONTENT_URL).respond(200, stream=DroppedStream())
        async with client_for(settings()) as client:
            with pytest.raises(GatewayUnreachableError) as caught:
                await client.download_file(OUTPUT_FILE_ID, tmp_path / "out.jsonl")
    assert CONTENT_URL in str(caught.value)
    assert _no_leftovers(tmp_path) == []


async def test_download_truncated_by_a_real_server_is_retryable(tmp_path):
    """Over a real socket httpx itself notices the short body; still retryable."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + b"x" * 100)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    gateway_settings = GatewaySettings(base_url=f"http://127.0.0.1:{port}", api_key=API_KEY)
    try:
        async with GatewayClient(gateway_settings) as client:
            with pytest.raises(RetryableGatewayError) as caught:
                await client.download_file(OUTPUT_FILE_ID, tmp_path / "out.jsonl")
    finally:
        server.close()
        await server.wait_closed()
    assert f"download file {OUTPUT_FILE_ID}" in str(caught.value)
    assert _no_leftovers(tmp_path) == []
    assert_secret_free(caught.value)


# -- batches -------------------------------------------------------------


async def test_create_batch_posts_the_json_body():
    with respx.mock() as mock:
        route = mock.post(f"{BASE_URL}/batches").respond(200, json=validating_batch())
        async with client_for(settings()) as client:
            batch = await client.create_batch(
                input_file_id=FILE_ID, endpoint="/v1/chat/completions", metadata={"job": "j1"}
            )
    assert batch.status is BatchStatus.VALIDATING
    assert json.loads(route.calls.last.request.content) == {
        "input_file_id": FILE_ID,
        "endpoint": "/v1/chat/completions",
        "completion_window": "24h",
        "metadata": {"job": "j1"},
    }


async def test_get_batch_parses_the_howto_answer():
    with respx.mock() as mock:
        mock.get(f"{BASE_URL}/batches/{BATCH_ID}").respond(200, json=completed_batch())
        async with client_for(settings()) as client:
            batch = await client.get_batch(BATCH_ID)
    assert batch.status is BatchStatus.COMPLETED
    assert batch.output_file_id == OUTPUT_FILE_ID


@pytest.mark.parametrize(
    ("dialect", "prefix"), [(Dialect.KONG, ""), (Dialect.OPENAI, "/v1"), (Dialect.AZURE, "/openai")]
)
async def test_cancel_batch_posts_to_cancel_route(dialect, prefix):
    with respx.mock(assert_all_called=True) as mock:
        route = mock.post(f"{BASE_URL}{prefix}/batches/{BATCH_ID}/cancel").respond(
            200, json=completed_batch(status="Cancelling", cancelling_at=1761817600)
        )
        async with client_for(settings(dialect)) as client:
            batch = await client.cancel_batch(BATCH_ID)
    assert route.call_count == 1
    assert route.calls.last.request.method == "POST"
    assert batch.status is BatchStatus.CANCELLING
    assert batch.cancelling_at == 1761817600


# -- paging --------------------------------------------------------------


def _pager(pages: dict[str | None, dict[str, Any]], seen: list[dict[str, str]]):
    def answer(request: httpx.Request) -> httpx.Response:
        params = dict(request.url.params)
        seen.append(params)
        return httpx.Response(200, json=pages[params.get("after")])

    return answer


async def test_iter_batches_follows_has_more_and_last_id():
    pages = {
        None: {
            "object": "list",
            "data": [completed_batch(id="b1"), completed_batch(id="b2")],
            "has_more": True,
            "first_id": "b1",
            "last_id": "b2",
        },
        "b2": {
            "data": [completed_batch(id="b3", status="InProgress")],
            "has_more": True,
            "last_id": "b3",
        },
        "b3": {"data": [completed_batch(id="b4")], "has_more": False, "last_id": "b4"},
    }
    seen: list[dict[str, str]] = []
    with respx.mock() as mock:
        mock.get(f"{BASE_URL}/batches").mock(side_effect=_pager(pages, seen))
        async with client_for(settings()) as client:
            batches = [batch async for batch in client.iter_batches()]
    assert [b.id for b in batches] == ["b1", "b2", "b3", "b4"]
    assert batches[2].status is BatchStatus.IN_PROGRESS
    assert [params.get("after") for params in seen] == [None, "b2", "b3"]
    assert all(params["limit"] == "100" for params in seen)


async def test_iter_batches_falls_back_to_the_last_item_when_last_id_is_missing():
    pages = {
        None: {"data": [completed_batch(id="b1"), completed_batch(id="b2")], "has_more": True},
        "b2": {"data": [completed_batch(id="b3")], "has_more": False},
    }
    seen: list[dict[str, str]] = []
    with respx.mock() as mock:
        mock.get(f"{BASE_URL}/batches").mock(side_effect=_pager(pages, seen))
        async with client_for(settings()) as client:
            ids = [batch.id async for batch in client.iter_batches()]
    assert ids == ["b1", "b2", "b3"]
    assert [params.get("after") for params in seen] == [None, "b2"]


async def test_iter_batches_stops_on_an_empty_page_even_if_has_more():
    seen: list[dict[str, str]] = []
    with respx.mock() as mock:
        mock.get(f"{BASE_URL}/batches").mock(
            side_effect=_pager({None: {"data": [], "has_more": True}}, seen)
        )
        async with client_for(settings()) as client:
            ids = [batch.id async for batch in client.iter_batches()]
    assert ids == []
    assert len(seen) == 1


async def test_iter_batches_refuses_to_loop_when_after_is_ignored():
    page = {"data": [completed_batch(id="b1")], "has_more": True, "last_id": "b1"}
    calls = 0

    def same_page_forever(request: httpx.Request) -> httpx.Response:
        # A mocked answer never yields to the event loop, so a timeout could not
        # stop a runaway loop: fail the test from here instead of hanging.
        nonlocal calls
        calls += 1
        if calls > 5:
            raise RuntimeError("iter_batches keeps asking for the same page")
        return httpx.Response(200, json=page)

    with respx.mock() as mock:
        mock.get(f"{BASE_URL}/batches").mock(side_effect=same_page_forever)
        async with client_for(settings()) as client:
            with pytest.raises(GatewayError, match="ignore the `after` parameter"):
                [batch.id async for batch in client.iter_batches()]
    assert calls == 2


async def test_iter_files_follows_pages_and_keeps_purpose_and_api_version():
    pages = {
        None: {
            "data": [uploaded_file(id="f1"), uploaded_file(id="f2")],
            "has_more": True,
            "last_id": "f2",
        },
        "f2": {"data": [uploaded_file(id="f3")], "has_more": False, "last_id": "f3"},
    }
    seen: list[dict[str, str]] = []
    with respx.mock() as mock:
        mock.get(f"{BASE_URL}/openai/files").mock(side_effect=_pager(pages, seen))
        async with client_for(settings(Dialect.AZURE)) as client:
            ids = [file.id async for file in client.iter_files(purpose="batch")]
    assert ids == ["f1", "f2", "f3"]
    assert [params.get("after") for params in seen] == [None, "f2"]
    assert all(params["purpose"] == "batch" for params in seen)
    assert all(params["api-version"] == "2025-01-01-preview" for params in seen)
