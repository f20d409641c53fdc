"""The interface between activities and wherever job files are kept.

Locations (relative paths, or file:// URIs, later s3:// or az://) cross the
workflow boundary; file contents never do (claim check).
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from typing import Protocol


class LocationError(ValueError):
    """A location that is malformed, escapes the store, or names nothing."""


class Storage(Protocol):
    def describe(self, location: str) -> str:
        """A human-readable name for error messages."""
        ...

    def exists(self, location: str) -> bool: ...

    def reading(self, location: str) -> AbstractContextManager[Path]:
        """A local path to read the file at location from (a temporary copy for remote stores)."""
        ...

    def atomic_write(self, location: str) -> AbstractContextManager[Path]:
        """A temporary local path to write; published at location only if the block succeeds.

        A crash mid-write never leaves a half file that looks whole.
        """
        ...
