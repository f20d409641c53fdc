"""Async client of the files and batches routes.

One instance (one httpx.AsyncClient, one connection pool) serves a whole worker.
Uploads stream from disk and downloads stream to disk, so a 200 MB file never
sits in memory. Failures become the typed errors of gateway.errors; nothing is
retried here.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Collection, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ValidationError

from contracts.ids import id_problem, quoted
from contracts.text import printable
from gateway import dialects
from gateway.errors import (
    GatewayError,
    NotAnIdError,
    RetryableGatewayError,
    error_for_response,
    error_for_transport,
    is_api_error_body,
)
from gateway.models import ID_ERROR_TYPE, Batch, FileObject, Page
from gateway.redaction import redact
from gateway.settings import GatewaySettings

M = TypeVar("M", bound=BaseModel)

DOWNLOAD_CHUNK_BYTES = 1024 * 1024
# The largest answer of a JSON route read: a list page of 100 batches is well
# under 1 MB; anything near this is not an answer of the route.
MAX_ANSWER_BYTES = 16 * 1024 * 1024
# The largest output or error file downloaded: a batch of a 1 GB input with long
# answers stays well below; a gateway streaming without end does not fill the disk.
MAX_DOWNLOAD_BYTES = 16 * 1024 * 1024 * 1024


class GatewayClient:
    def __init__(self, settings: GatewaySettings, http: httpx.AsyncClient | None = None) -> None:
        self.settings = settings
        self._owns_http = http is None
        self._http = http or httpx.AsyncClient(
            timeout=httpx.Timeout(settings.timeout_seconds, connect=10.0),
            limits=httpx.Limits(max_connections=100, max_keepalive_connections=20),
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._owns_http:
            await self._http.aclose()

    def _secrets(self) -> frozenset[str]:
        """Values that must never appear in an exception message."""
        return self.settings.secret_values()

    # -- files -------------------------------------------------------------

    async def upload_file(self, path: Path, *, filename: str, purpose: str = "batch") -> FileObject:
        """Stream a file from disk as multipart; 200 (OpenAI) and 201 (Kong) both succeed."""
        with path.open("rb") as stream:
            return await self._call(
                "POST",
                "/files",
                FileObject,
                operation=f"upload {path.name}",
                files={"file": (filename, stream, "application/jsonl")},
                data={"purpose": purpose},
            )

    async def get_file(self, file_id: str) -> FileObject:
        return await self._call("GET", _path("files", file_id), FileObject, operation="get file")

    async def list_files(
        self, *, purpose: str | None = None, after: str | None = None, limit: int = 100
    ) -> Page[FileObject]:
        params: dict[str, Any] = {"limit": limit}
        if purpose:
            params["purpose"] = purpose
        if after:
            params["after"] = after
        return await self._call(
            "GET",
            "/files",
            Page[FileObject],
            operation="list files",
            params=params,
            collection=True,
        )

    async def iter_files(self, *, purpose: str | None = None) -> AsyncIterator[FileObject]:
        after: str | None = None
        while True:
            page = await self.list_files(purpose=purpose, after=after)
            for item in page.data:
                yield item
            if not page.has_more or not page.data:
                return
            after = _next_cursor(after, page, operation="list files")

    async def delete_file(self, file_id: str) -> bool:
        """True when deleted, False when the gateway holds no such file (already deleted).

        Raises RouteNotSupportedError when the gateway has no delete route (Kong may not).
        """
        path = _path("files", file_id)
        operation = f"delete file {file_id}"
        response = await self._request(
            "DELETE", path, operation=operation, collection=True, accept={404}
        )
        if response.status_code != 404:
            return True
        if is_api_error_body(response):
            return False
        raise error_for_response(
            response, operation=operation, collection_route=True, secrets=self._secrets()
        )

    async def download_file(
        self, file_id: str, destination: Path, *, max_bytes: int = MAX_DOWNLOAD_BYTES
    ) -> int:
        """Stream a file's content into destination; returns the bytes written.

        A file over max_bytes (by its Content-Length, or as it streams) is refused
        for good: the same file comes back as large on every try.

        The content is written to destination + ".part" and renamed into place
        only once complete, so a failed download never leaves a file that looks
        whole. A body shorter than its Content-Length is a truncated download
        and is raised as retryable. A gzip/deflate Content-Encoding is decoded.
        """
        url = dialects.route(self.settings, _path("files", file_id, "content"))
        operation = f"download file {file_id}"
        request = self._http.build_request(
            "GET", url, headers=dialects.auth_headers(self.settings), params=self._params(None)
        )
        partial = destination.with_name(destination.name + ".part")
        written = 0
        try:
            try:
                response = await self._http.send(request, stream=True)
                try:
                    if response.is_error:
                        await response.aread()
                        raise error_for_response(
                            response, operation=operation, secrets=self._secrets()
                        )
                    expected = response.headers.get("content-length")
                    if expected is not None and expected.isdigit() and int(expected) > max_bytes:
                        raise _too_large(operation, int(expected), max_bytes)
                    with partial.open("wb") as out:
                        # aiter_bytes decodes Content-Encoding; Content-Length
                        # counts the encoded bytes, i.e. num_bytes_downloaded.
                        async for chunk in response.aiter_bytes(DOWNLOAD_CHUNK_BYTES):
                            out.write(chunk)
                            written += len(chunk)
                            if written > max_bytes:
                                raise _too_large(operation, written, max_bytes)
                        out.flush()
                        await asyncio.to_thread(os.fsync, out.fileno())
                    received = response.num_bytes_downloaded
                finally:
                    await response.aclose()
            except httpx.TransportError as exc:
                # Not chained: the httpx exception may quote request headers.
                raise error_for_transport(
                    exc, operation=operation, url=url, secrets=self._secrets()
                ) from None
            if expected is not None and expected.isdigit() and int(expected) != received:
                raise RetryableGatewayError(
                    f"{operation}: truncated, got {received} of {expected} bytes"
                )
            os.replace(partial, destination)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        return written

    # -- batches -----------------------------------------------------------

    async def create_batch(
        self,
        *,
        input_file_id: str,
        endpoint: str,
        completion_window: str = "24h",
        metadata: Mapping[str, str] | None = None,
    ) -> Batch:
        body: dict[str, Any] = {
            "input_file_id": input_file_id,
            "endpoint": endpoint,
            "completion_window": completion_window,
        }
        if metadata:
            body["metadata"] = dict(metadata)
        _checked_id(input_file_id)
        return await self._call("POST", "/batches", Batch, operation="create batch", json=body)

    async def get_batch(self, batch_id: str) -> Batch:
        return await self._call("GET", _path("batches", batch_id), Batch, operation="get batch")

    async def list_batches(self, *, after: str | None = None, limit: int = 100) -> Page[Batch]:
        params: dict[str, Any] = {"limit": limit}
        if after:
            params["after"] = after
        return await self._call(
            "GET", "/batches", Page[Batch], operation="list batches", params=params, collection=True
        )

    async def iter_batches(self) -> AsyncIterator[Batch]:
        """Newest first, as the API lists them."""
        after: str | None = None
        while True:
            page = await self.list_batches(after=after)
            for item in page.data:
                yield item
            if not page.has_more or not page.data:
                return
            after = _next_cursor(after, page, operation="list batches")

    async def cancel_batch(self, batch_id: str) -> Batch:
        return await self._call(
            "POST",
            _path("batches", batch_id, "cancel"),
            Batch,
            operation="cancel batch",
            collection=True,
        )

    # -- plumbing ----------------------------------------------------------

    def _params(self, params: Mapping[str, Any] | None) -> dict[str, Any]:
        return {**dialects.default_params(self.settings), **(params or {})}

    async def _request(
        self,
        method: str,
        path: str,
        *,
        operation: str,
        collection: bool = False,
        params: Mapping[str, Any] | None = None,
        accept: Collection[int] = (),
        **kwargs: Any,
    ) -> httpx.Response:
        url = dialects.route(self.settings, path)
        request = self._http.build_request(
            method,
            url,
            headers=dialects.auth_headers(self.settings),
            params=self._params(params),
            **kwargs,
        )
        try:
            response = await self._read_bounded(request, operation=operation)
        except httpx.TransportError as exc:
            raise error_for_transport(
                exc, operation=operation, url=url, secrets=self._secrets()
            ) from None
        if response.is_error and response.status_code not in accept:
            raise error_for_response(
                response,
                operation=operation,
                collection_route=collection,
                secrets=self._secrets(),
            )
        return response

    async def _read_bounded(self, request: httpx.Request, *, operation: str) -> httpx.Response:
        """The answer, read whole only up to MAX_ANSWER_BYTES: a JSON route's body is small."""
        response = await self._http.send(request, stream=True)
        chunks: list[bytes] = []
        size = 0
        try:
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > MAX_ANSWER_BYTES:
                    # The same route answers the same way again: not retried.
                    raise GatewayError(
                        f"{operation}: the gateway answered {response.status_code} with a body "
                        f"over {MAX_ANSWER_BYTES} bytes, far more than this route answers",
                        status_code=response.status_code,
                        outcome_unknown=request.method != "GET",
                    )
                chunks.append(chunk)
        finally:
            await response.aclose()
        # Decoded already: the encoding headers would make httpx decode it again.
        headers = [
            (name, value)
            for name, value in response.headers.multi_items()
            if name.lower() not in ("content-encoding", "content-length", "transfer-encoding")
        ]
        return httpx.Response(
            response.status_code,
            headers=headers,
            content=b"".join(chunks),
            request=request,
            extensions=response.extensions,
        )

    async def _call(
        self, method: str, path: str, model: type[M], *, operation: str, **kwargs: Any
    ) -> M:
        response = await self._request(method, path, operation=operation, **kwargs)
        try:
            return model.model_validate_json(response.content)
        except (ValidationError, RecursionError) as exc:
            # Not chained, and the body never quoted: an answer that is not what
            # the route answers may be anything (another file's content, a secret
            # echoed); what is wrong with it and its size are enough to act on.
            first = (
                exc.errors(include_input=False, include_url=False)[0]
                if isinstance(exc, ValidationError) and exc.error_count()
                else None
            )
            where = ".".join(str(part) for part in first["loc"]) if first else ""
            why = f"{where or 'body'}: {first['msg']}" if first else "nested too deeply"
            content_type = printable(response.headers.get("content-type", "no content type"), 80)
            message = (
                f"{operation}: the gateway answered {response.status_code} with a body that is "
                f"not a {model.__name__} ({why}; {len(response.content)} bytes of {content_type})"
            )
            # The gateway acted (2xx) but its answer is unreadable: what it made is unknown.
            if first is not None and first["type"] == ID_ERROR_TYPE:
                # An id that is not an id comes back the same on every try.
                raise NotAnIdError(
                    redact(message, self._secrets()),
                    status_code=response.status_code,
                    outcome_unknown=True,
                ) from None
            # Retryable: a proxy's error page or a half-sent body is usually passing,
            # and the job's schedule-to-close timeouts bound the retries.
            raise RetryableGatewayError(
                redact(message, self._secrets()),
                status_code=response.status_code,
                outcome_unknown=True,
            ) from None


def _too_large(operation: str, size: int, max_bytes: int) -> GatewayError:
    return GatewayError(
        f"{operation}: {size} bytes or more, over the {max_bytes} bytes a download may hold; "
        "the file is left at the gateway"
    )


def _checked_id(value: str) -> str:
    """value when it has an id's shape; NotAnIdError before any request otherwise."""
    problem = id_problem(value)
    if problem is not None:
        raise NotAnIdError(f"{quoted(value)} {problem}; no request was sent")
    return value


def _path(collection: str, object_id: str, *rest: str) -> str:
    """/collection/{id}/rest…, the id checked and percent-encoded as one path segment."""
    segments = (collection, quote(_checked_id(object_id), safe=""), *rest)
    return "/" + "/".join(segments)


def _next_cursor(previous: str | None, page: Page[Any], *, operation: str) -> str:
    """The `after` of the next page; refuses to loop on a gateway that ignores `after`."""
    cursor = page.last_id or page.data[-1].id
    if cursor == previous:
        raise GatewayError(
            f"{operation}: the gateway answered has_more with the same last id {cursor!r} "
            "again; it seems to ignore the `after` parameter"
        )
    return str(cursor)
