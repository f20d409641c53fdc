"""One Storage for every kind of location: the store is picked by the location's scheme."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from urllib.parse import urlparse

from storage.allowed import AllowedLocations
from storage.base import LocationError, Storage
from storage.local import LocalStorage
from storage.objects import SCHEMES, ObjectStorage


class Stores:
    """Paths and file:// under the data directory; s3://, az://, gs:// in object stores."""

    def __init__(
        self,
        local: LocalStorage,
        objects: ObjectStorage | None = None,
        allowed: AllowedLocations | None = None,
    ) -> None:
        """allowed: the worker's allow-list, checked on every access; None allows all."""
        self.local = local
        self.objects = objects or ObjectStorage()
        self.allowed = allowed

    def store_for(self, location: str) -> Storage:
        """The store of location, once the allow-list lets jobs use it."""
        if self.allowed is not None:
            self.allowed.check(location)
        return self._store(location)

    def _store(self, location: str) -> Storage:
        if "://" not in location:
            return self.local
        scheme = urlparse(location).scheme
        if scheme == "file":
            return self.local
        if scheme in SCHEMES:
            return self.objects
        raise LocationError(
            f"{location}: unknown scheme {scheme!r}; use a path, file://, s3://, az:// or gs://"
        )

    def describe(self, location: str) -> str:
        return self._store(location).describe(location)

    async def check(self, location: str) -> None:
        await self.store_for(location).check(location)

    async def size(self, location: str) -> int | None:
        return await self.store_for(location).size(location)

    async def exists(self, location: str) -> bool:
        return await self.store_for(location).exists(location)

    def read_chunks(self, location: str) -> AsyncIterator[bytes]:
        return self.store_for(location).read_chunks(location)

    def reading(self, location: str) -> AbstractAsyncContextManager[Path]:
        return self.store_for(location).reading(location)

    def atomic_write(self, location: str) -> AbstractAsyncContextManager[Path]:
        return self.store_for(location).atomic_write(location)

    async def delete(self, location: str) -> None:
        await self.store_for(location).delete(location)
