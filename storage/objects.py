"""Object stores (S3, Azure Blob Storage, Google Cloud Storage) through obstore.

obstore is the Rust `object_store` crate behind an async Python API: every
transfer streams in bounded chunks off the event loop, and each store reads its
credentials and endpoint from the cloud's standard environment (AWS_*,
AZURE_STORAGE_*, GOOGLE_*), so none ever enters a workflow's input or history.
"""

from __future__ import annotations

import asyncio
import os
import re
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn
from urllib.parse import urlparse

import obstore
from obstore.exceptions import (
    AlreadyExistsError,
    BaseError,
    InvalidPathError,
    NotSupportedError,
    PermissionDeniedError,
    PreconditionError,
    UnauthenticatedError,
    UnknownConfigurationKeyError,
)
from obstore.store import AzureStore, GCSStore, S3Store

from storage.base import CHUNK_BYTES, LocationError

if TYPE_CHECKING:
    from obstore.store import ClientConfig, ObjectStore, RetryConfig

SCHEMES = ("s3", "az", "gs")

# The standard opt-in to plain HTTP, for a local server such as MinIO, moto or
# Azurite. The stores read every other setting (keys, region, endpoint) from the
# environment themselves: the names obstore's store classes document.
ALLOW_HTTP_ENV_NAMES = {
    "s3": ("AWS_ALLOW_HTTP",),
    "az": ("AZURE_ALLOW_HTTP", "AZURE_STORAGE_USE_EMULATOR"),
    "gs": (),
}

# An upload holds at most a few parts in memory: 2 in flight of 5 MiB (S3's
# smallest part) measured 25-35 MB of peak growth for 192 MB, against 40-56 MB
# for 4 of 8 MiB, and 17 MB once fed in chunks (_file_chunks;
# bench/storage_backends.py). 10,000 parts: objects up to 50 GB.
PART_BYTES = 5 * 1024 * 1024
PARTS_IN_FLIGHT = 2

# The store retries a request a few times within a minute; past that the error
# reaches Temporal, whose retry policy takes over (as for gateway errors).
_RETRY: RetryConfig = {"max_retries": 3, "retry_timeout": timedelta(seconds=60)}

# Markers of a missing bucket or container in the stores' error bodies.
_NO_BUCKET = ("NoSuchBucket", "ContainerNotFound", "bucket does not exist")


class AccessDenied(LocationError):
    """The credentials in the worker's environment may not read or write this location."""


class StorageUnavailable(Exception):
    """A transient storage failure (network, 5xx, throttling): retrying may succeed."""


def _allow_http(scheme: str) -> bool:
    """Whether the environment opts this scheme's store in to plain HTTP."""
    names = ALLOW_HTTP_ENV_NAMES[scheme]
    return any(os.environ.get(n, "").strip().lower() in ("1", "true", "yes") for n in names)


def _client_options(scheme: str) -> ClientConfig:
    # Given options replace the ones the store reads from the environment, so the
    # plain-HTTP opt-in is carried over; the timeout covers a whole streamed body.
    return {"timeout": "1h", "connect_timeout": "15s", "allow_http": _allow_http(scheme)}


def _redacted(text: str) -> str:
    """One line of a store's error, with any URL query (an Azure SAS token) and URL
    credentials removed."""
    first = text.strip().splitlines()[0] if text.strip() else "unknown error"
    # A credential in an endpoint URL (http://user:secret@minio:9000) goes too.
    first = re.sub(r"(\b[A-Za-z][A-Za-z0-9+.\-]*://)[^/\s@?#]+@", r"\1[redacted]@", first)
    return re.sub(r"\?[^\s\"'<>]*", "", first)[:300]


class ObjectStorage:
    """Locations of the form s3://bucket/key, az://container/blob and gs://bucket/key."""

    def __init__(self) -> None:
        self._stores: dict[tuple[str, str], ObjectStore] = {}

    def split(self, location: str) -> tuple[str, str, str]:
        """(scheme, bucket or container, key) of a location, or LocationError."""
        parsed = urlparse(location)
        if parsed.scheme not in SCHEMES:
            raise LocationError(f"{location}: not an s3://, az:// or gs:// location")
        key = parsed.path.lstrip("/")
        if not parsed.netloc or not key or key.endswith("/"):
            raise LocationError(
                f"{location}: expected {parsed.scheme}://BUCKET/KEY naming one object"
            )
        if parsed.query or parsed.fragment or "@" in parsed.netloc:
            raise LocationError(
                f"{location}: credentials and options come from the environment, not the location"
            )
        if any(part in ("", ".", "..") for part in key.split("/")):
            raise LocationError(f"{location}: empty, '.' or '..' parts may not appear in a key")
        return parsed.scheme, parsed.netloc, key

    def _store(self, scheme: str, bucket: str) -> ObjectStore:
        found = self._stores.get((scheme, bucket))
        if found is not None:
            return found
        options = _client_options(scheme)
        store: ObjectStore
        if scheme == "s3":
            store = S3Store(bucket, client_options=options, retry_config=_RETRY)
        elif scheme == "az":
            store = AzureStore(bucket, client_options=options, retry_config=_RETRY)
        else:
            store = GCSStore(bucket, client_options=options, retry_config=_RETRY)
        self._stores[(scheme, bucket)] = store
        return store

    def _open(self, location: str) -> tuple[ObjectStore, str]:
        scheme, bucket, key = self.split(location)
        try:
            return self._store(scheme, bucket), key
        except (BaseError, ValueError) as exc:
            # Missing region, account or credentials: the environment is wrong.
            raise LocationError(
                f"{location}: cannot configure the {scheme} store from the environment "
                f"({_redacted(str(exc))})"
            ) from None

    def describe(self, location: str) -> str:
        self.split(location)
        return location

    async def check(self, location: str) -> None:
        store, key = self._open(location)
        try:
            # One listing request (under key/, so it finds next to nothing) reaches
            # the bucket: a missing one or a refused credential answers now.
            async for _ in obstore.list(store, prefix=key, chunk_size=1):
                break
        except Exception as exc:
            _raise_for(exc, location)

    async def size(self, location: str) -> int | None:
        store, key = self._open(location)
        try:
            meta = await obstore.head_async(store, key)
        except FileNotFoundError as exc:
            if _names_missing_bucket(exc):
                _raise_for(exc, location)
            return None
        except Exception as exc:
            _raise_for(exc, location)
        return meta["size"]

    async def exists(self, location: str) -> bool:
        return await self.size(location) is not None

    async def read_chunks(self, location: str) -> AsyncIterator[bytes]:
        store, key = self._open(location)
        try:
            result = await obstore.get_async(store, key)
            async for chunk in result.stream(min_chunk_size=CHUNK_BYTES):
                yield bytes(chunk)
        except Exception as exc:
            _raise_for(exc, location)

    @asynccontextmanager
    async def reading(self, location: str) -> AsyncIterator[Path]:
        with tempfile.TemporaryDirectory(prefix="batch-read-") as scratch:
            local = Path(scratch) / "object"
            with local.open("wb") as out:
                async for chunk in self.read_chunks(location):
                    await asyncio.to_thread(out.write, chunk)
            yield local

    @asynccontextmanager
    async def atomic_write(self, location: str) -> AsyncIterator[Path]:
        """Written locally, then put in one request or one multipart upload.

        Both are atomic in S3, Blob Storage and GCS: the object appears whole
        when the upload completes, and an upload cut short (an exception, a
        SIGKILL) leaves nothing under the key: no temporary key to clean up.
        """
        store, key = self._open(location)
        with tempfile.TemporaryDirectory(prefix="batch-write-") as scratch:
            local = Path(scratch) / "object"
            local.touch()
            yield local
            await self._put(store, key, local, location)

    async def put_file(self, location: str, path: Path) -> None:
        """A finished local file published at location, atomically (see atomic_write)."""
        store, key = self._open(location)
        await self._put(store, key, path, location)

    async def _put(self, store: ObjectStore, key: str, path: Path, location: str) -> None:
        try:
            await obstore.put_async(
                store,
                key,
                _file_chunks(path),
                chunk_size=PART_BYTES,
                max_concurrency=PARTS_IN_FLIGHT,
            )
        except Exception as exc:
            _raise_for(exc, location)

    async def locations_under(self, folder: str) -> list[str]:
        """The location of every object whose key starts with ``folder/``."""
        scheme, bucket, _ = self.split(folder)
        store, key = self._open(folder)
        found: list[str] = []
        try:
            async for chunk in obstore.list(store, prefix=key + "/", chunk_size=1000):
                found.extend(f"{scheme}://{bucket}/{meta['path']}" for meta in chunk)
        except Exception as exc:
            _raise_for(exc, folder)
        return found

    async def delete_under(self, folder: str, only: Callable[[str], bool]) -> int:
        """Remove the objects under ``folder/`` whose name there `only` accepts; how many.

        Never a whole prefix: whoever names the folder may not own all of it.
        """
        locations = await self.locations_under(folder)
        store, _ = self._open(folder)
        prefix = folder.rstrip("/") + "/"
        keys = [
            self.split(location)[2]
            for location in locations
            if location.startswith(prefix) and only(location[len(prefix) :])
        ]
        try:
            for start in range(0, len(keys), 1000):
                await obstore.delete_async(store, keys[start : start + 1000])
        except Exception as exc:
            _raise_for(exc, folder)
        return len(keys)

    async def delete(self, location: str) -> None:
        store, key = self._open(location)
        try:
            await obstore.delete_async(store, key)
        except FileNotFoundError as exc:
            if _names_missing_bucket(exc):
                _raise_for(exc, location)
        except Exception as exc:
            _raise_for(exc, location)


async def _file_chunks(path: Path) -> AsyncIterator[bytes]:
    """The file a chunk at a time: obstore then holds only the parts in flight.

    Given the path itself, obstore's upload of 100 MB grew the process by 31 MB
    and kept it; fed these chunks, by 12 MB, given back after (bench/worker_memory_s3.py).
    """
    with path.open("rb") as stream:
        while chunk := await asyncio.to_thread(stream.read, CHUNK_BYTES):
            yield chunk


def _names_missing_bucket(exc: BaseException) -> bool:
    return any(marker in str(exc) for marker in _NO_BUCKET)


def _raise_for(exc: BaseException, location: str) -> NoReturn:
    """One line naming the location; retryable only when a retry could succeed."""
    if isinstance(exc, LocationError | StorageUnavailable):
        raise exc
    if _names_missing_bucket(exc):
        raise LocationError(f"{location}: no such bucket or container") from None
    if isinstance(exc, FileNotFoundError):
        raise LocationError(f"{location}: no such file") from None
    if isinstance(exc, PermissionDeniedError | UnauthenticatedError | PermissionError):
        raise AccessDenied(
            f"{location}: access denied to the credentials in the worker's environment"
        ) from None
    if isinstance(
        exc,
        InvalidPathError
        | NotSupportedError
        | UnknownConfigurationKeyError
        | AlreadyExistsError
        | PreconditionError,
    ):
        raise LocationError(f"{location}: {_redacted(str(exc))}") from None
    text = str(exc)
    if re.search(r"status code: 403\b|AccessDenied|InvalidAccessKeyId|AuthenticationFailed", text):
        raise AccessDenied(
            f"{location}: access denied to the credentials in the worker's environment"
        ) from None
    if re.search(r"status code: 4(00|04|05|11|13|14)\b", text):
        raise LocationError(f"{location}: {_redacted(text)}") from None
    # Not chained: the store's error may quote a request URL.
    raise StorageUnavailable(f"{location}: storage unavailable: {_redacted(text)}") from None
