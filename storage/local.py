"""The local-disk store: a root folder that starter and workers share."""

from __future__ import annotations

import asyncio
import os
import tempfile
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlparse

from storage.base import CHUNK_BYTES, LocationError


class LocalStorage:
    """Relative paths and file:// URIs, all inside one root (BATCH_DATA_DIR)."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self._leftovers = _Leftovers()

    def path(self, location: str) -> Path:
        """The absolute path of a location, refusing any that would leave the root."""
        if not location or not location.strip():
            raise LocationError("empty file location")
        raw = location
        if "://" in location:
            parsed = urlparse(location)
            if parsed.scheme != "file":
                raise LocationError(
                    f"{location}: only relative paths and file:// locations are local"
                )
            raw = unquote(parsed.path)
        candidate = Path(raw)
        if not candidate.is_absolute():
            if ".." in PurePosixPath(raw).parts:
                raise LocationError(f"{location}: '..' may not appear in a location")
            candidate = self.root / candidate
        resolved = candidate.resolve()
        if resolved != self.root and self.root not in resolved.parents:
            raise LocationError(
                f"{location}: outside the data directory {self.root} (set BATCH_DATA_DIR)"
            )
        return resolved

    def location_of(self, path: Path) -> str:
        """The location, relative to the root, of a path on this machine."""
        resolved = path.resolve()
        if resolved != self.root and self.root not in resolved.parents:
            raise LocationError(
                f"{path}: outside the data directory {self.root}; move the file there "
                "or set BATCH_DATA_DIR to a folder that holds it"
            )
        return resolved.relative_to(self.root).as_posix()

    def describe(self, location: str) -> str:
        return str(self.path(location))

    async def check(self, location: str) -> None:
        self.path(location)

    async def size(self, location: str) -> int | None:
        path = self.path(location)
        return path.stat().st_size if path.is_file() else None

    async def exists(self, location: str) -> bool:
        return self.path(location).is_file()

    def _existing(self, location: str) -> Path:
        path = self.path(location)
        if not path.is_file():
            raise LocationError(f"{path}: no such file")
        return path

    async def read_chunks(self, location: str) -> AsyncIterator[bytes]:
        with self._existing(location).open("rb") as stream:
            while chunk := await asyncio.to_thread(stream.read, CHUNK_BYTES):
                yield chunk

    @asynccontextmanager
    async def reading(self, location: str) -> AsyncIterator[Path]:
        yield self._existing(location)

    @asynccontextmanager
    async def atomic_write(self, location: str) -> AsyncIterator[Path]:
        target = self.path(location)
        tmp = await asyncio.to_thread(_fresh_part_file, target, self._leftovers)
        try:
            yield tmp
            await asyncio.to_thread(_publish, tmp, target)
        finally:
            tmp.unlink(missing_ok=True)

    async def delete(self, location: str) -> None:
        self.path(location).unlink(missing_ok=True)


class _Leftovers:
    """Part files of writers that died (SIGKILL) before their rename, found by listing a
    folder at most once every RESCAN_SECONDS, not on every write: a folder of many jobs'
    files costs a listing a moment, and each location's leftovers go at its next write.

    A dead writer's location is written again by a retry of its step, which Temporal
    starts at least a retry interval (a second or more) after the writer died: so a
    listing renewed more often than that always holds the leftovers the retry must
    clear, even when another job had the folder listed just before the writer died.
    """

    RESCAN_SECONDS = 0.5

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._found: dict[Path, tuple[float, dict[str, list[Path]]]] = {}

    def take(self, target: Path) -> list[Path]:
        """The leftovers of target's writers, each handed out once."""
        folder = target.parent
        with self._lock:
            listed = self._found.get(folder)
            now = time.monotonic()
            if listed is None or now - listed[0] > self.RESCAN_SECONDS:
                listed = (now, _part_files(folder))
                self._found[folder] = listed
            return listed[1].pop(target.name, [])


def _part_files(folder: Path) -> dict[str, list[Path]]:
    """Part files in folder by the name of the file they were to become."""
    found: dict[str, list[Path]] = {}
    for entry in os.scandir(folder):
        name = entry.name
        if name.startswith(".") and name.endswith(".part"):
            target, _, _ = name[1 : -len(".part")].rpartition(".")
            if target:
                found.setdefault(target, []).append(Path(entry.path))
    return found


def _fresh_part_file(target: Path, leftovers: _Leftovers) -> Path:
    """A private temporary file beside target, after clearing a dead writer's leftovers."""
    target.parent.mkdir(parents=True, exist_ok=True)
    for stale in leftovers.take(target):
        stale.unlink(missing_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    # mkstemp makes it private (0600); a results file is as readable as any other.
    tmp.chmod(0o644)
    return tmp


def _publish(tmp: Path, target: Path) -> None:
    """fsync, rename into place, fsync the folder: the rename survives a power cut."""
    with tmp.open("rb") as written:
        os.fsync(written.fileno())
    os.replace(tmp, target)
    dir_fd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
