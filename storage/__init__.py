"""Where job files live: one small async interface over the local disk and object stores."""

from storage.allowed import AllowedLocations
from storage.base import LocationError, Storage
from storage.local import LocalStorage
from storage.objects import AccessDenied, ObjectStorage, StorageUnavailable
from storage.stores import Stores

__all__ = [
    "AccessDenied",
    "AllowedLocations",
    "LocalStorage",
    "LocationError",
    "ObjectStorage",
    "Storage",
    "StorageUnavailable",
    "Stores",
]
