"""Where job files live: one small interface, so object storage can follow the local disk."""

from storage.base import LocationError, Storage
from storage.local import LocalStorage

__all__ = ["LocalStorage", "LocationError", "Storage"]
