"""The local-disk store: a root folder that starter and workers share."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlparse

from storage.base import LocationError


class LocalStorage:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def path(self, location: str) -> Path:
        """The absolute path of a location, refusing any that would leave the root."""
        if not location or not location.strip():
            raise LocationError("empty file location")
        raw = location
        if "://" in location:
            parsed = urlparse(location)
            if parsed.scheme != "file":
                raise LocationError(
                    f"{location}: only relative paths and file:// locations are supported so far"
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

    def exists(self, location: str) -> bool:
        return self.path(location).is_file()

    @contextmanager
    def reading(self, location: str) -> Iterator[Path]:
        path = self.path(location)
        if not path.is_file():
            raise LocationError(f"{path}: no such file")
        yield path

    @contextmanager
    def atomic_write(self, location: str) -> Iterator[Path]:
        target = self.path(location)
        target.parent.mkdir(parents=True, exist_ok=True)
        # Leftovers of a writer that died (SIGKILL) before its rename.
        for stale in target.parent.glob(f".{target.name}.*.part"):
            stale.unlink(missing_ok=True)
        fd, tmp_name = tempfile.mkstemp(
            prefix=f".{target.name}.", suffix=".part", dir=target.parent
        )
        os.close(fd)
        tmp = Path(tmp_name)
        # mkstemp makes it private (0600); a results file is as readable as any other.
        tmp.chmod(0o644)
        try:
            yield tmp
            with tmp.open("rb") as written:
                os.fsync(written.fileno())
            os.replace(tmp, target)
            dir_fd = os.open(target.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        finally:
            tmp.unlink(missing_ok=True)
