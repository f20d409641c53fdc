"""The interface between activities and wherever job files are kept.

Locations (relative paths, file:// URIs, s3://, az://, gs:// URIs) cross the
workflow boundary; file contents never do (claim check). Every method is async
and streams: a 200 MB file costs the worker chunks of memory, never the file.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Protocol

CHUNK_BYTES = 1024 * 1024


class LocationError(ValueError):
    """A location that is malformed, escapes the store, names nothing, or may not be used.

    Retrying cannot fix it: activities turn it into a non-retryable failure whose
    one line names the location.
    """


class Storage(Protocol):
    def describe(self, location: str) -> str:
        """A human-readable name for error messages (never holds a credential)."""
        ...

    async def check(self, location: str) -> None:
        """Raise LocationError now, not after a 24-hour batch, when location cannot be used.

        A malformed location, one outside the store, a missing bucket or
        container, credentials that are refused. Writes nothing.
        """
        ...

    async def size(self, location: str) -> int | None:
        """The size in bytes of the file at location; None when there is none."""
        ...

    async def exists(self, location: str) -> bool: ...

    def read_chunks(self, location: str) -> AsyncIterator[bytes]:
        """The file's bytes in order, a chunk at a time."""
        ...

    def reading(self, location: str) -> AbstractAsyncContextManager[Path]:
        """A local path to read the file from (a temporary copy for remote stores)."""
        ...

    def atomic_write(self, location: str) -> AbstractAsyncContextManager[Path]:
        """A temporary local path to write; published at location only if the block succeeds.

        Readers see the old file or the whole new one; a crash mid-write never
        leaves anything under location that looks whole.
        """
        ...

    async def delete(self, location: str) -> None:
        """Remove the file at location; no error when there is none."""
        ...
