"""The e2e stack (dev server, emulator, worker processes) for tests that drive starter.py."""

from __future__ import annotations

from tests.e2e.conftest import dev_server, stack

__all__ = ["dev_server", "stack"]
