"""Where jobs may read and write: the operator's allow-list, checked before any access.

Whoever may start a workflow chooses its locations; the worker's credentials
reach further than any one team should. The worker takes a list of location
prefixes (BATCH_ALLOWED_LOCATIONS: `s3://bucket/prefix`, `az://container/prefix`,
`gs://bucket/prefix`, and folders under the data directory, relative or
file://), and refuses anything else with one line naming the location and the
setting. `*` allows every location (the behaviour before the list existed);
unset, the data directory alone.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from urllib.parse import urlparse

from storage.base import LocationError
from storage.local import LocalStorage
from storage.objects import SCHEMES

ALLOW_EVERYTHING = "*"


class AllowedLocations:
    def __init__(self, local: LocalStorage, prefixes: list[str] | None, setting: str) -> None:
        """prefixes None: every location; [] the data directory alone."""
        self.setting = setting
        self.everything = prefixes is None
        self.listed = ", ".join(prefixes) if prefixes else "unset: the data directory only"
        self._local = local
        self._objects: list[str] = []
        self._folders: list[Path] = []
        for prefix in (prefixes or ["."]) if prefixes is not None else []:
            scheme = urlparse(prefix).scheme if "://" in prefix else ""
            if scheme in SCHEMES:
                if ".." in PurePosixPath(urlparse(prefix).path).parts:
                    raise LocationError(f"{setting}: {prefix}: '..' may not appear in a prefix")
                # A bucket or folder is allowed with everything inside it, nothing beside it.
                self._objects.append(prefix if prefix.endswith("/") else prefix + "/")
            elif scheme in ("", "file"):
                self._folders.append(local.path(prefix))
            else:
                raise LocationError(
                    f"{setting}: {prefix}: unknown scheme {scheme!r}; "
                    "use s3://, az://, gs://, file:// or a folder under the data directory"
                )

    @classmethod
    def from_setting(cls, raw: str | None, local: LocalStorage, setting: str) -> AllowedLocations:
        """The list from a comma-separated setting."""
        entries = [entry.strip() for entry in (raw or "").split(",") if entry.strip()]
        if ALLOW_EVERYTHING in entries:
            if entries != [ALLOW_EVERYTHING]:
                raise LocationError(
                    f"{setting}: '*' allows everything; give it alone or not at all"
                )
            return cls(local, None, setting)
        return cls(local, entries, setting)

    def check(self, location: str) -> None:
        """Nothing when jobs may use location; LocationError in one line otherwise."""
        if self.everything:
            return
        scheme = urlparse(location).scheme if "://" in location else ""
        if scheme in SCHEMES:
            parts = PurePosixPath(urlparse(location).path).parts
            if ".." not in parts and any(location.startswith(p) for p in self._objects):
                return
        elif scheme in ("", "file"):
            path = self._local.path(location)
            if any(path == folder or folder in path.parents for folder in self._folders):
                return
        else:
            return  # an unknown scheme is refused by Stores with its own message
        raise LocationError(
            f"{location}: not a location this worker lets jobs use ({self.setting}: {self.listed})"
        )
