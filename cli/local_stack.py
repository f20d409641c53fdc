"""Whether the starter talks to the local stack of `make up`, whose emulator may be polled fast.

The default poll interval (60 s) suits real gateways (Azure asks for no more
than one poll a minute) but makes a 5-request demo batch take a minute. The
stack writes LOCAL_STACK_FILE while it is up; a starter aimed at the same
Temporal, with no --poll-seconds, uses the stack's interval and says so.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from contracts.constants import LOCAL_STACK_FILE
from temporal_client import connect_config

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_POLL_SECONDS = 60.0
_LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "[::1]"})


def _endpoint(address: str) -> tuple[str, str]:
    host, _, port = address.rpartition(":")
    return ("localhost" if host in _LOCAL_HOSTS else host), port


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stack_poll_seconds(marker: Path | None = None) -> float | None:
    """The stack's poll interval while it is up and this starter's Temporal is its; else None."""
    try:
        found: Any = json.loads((marker or REPO_ROOT / LOCAL_STACK_FILE).read_text())
        pid, address, seconds = found["pid"], found["temporal_address"], found["poll_seconds"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(pid, int) or not isinstance(address, str) or not _alive(pid):
        return None
    target = str(connect_config()["target_host"])
    if _endpoint(target) != _endpoint(address):
        return None
    return float(seconds) if isinstance(seconds, int | float) and seconds > 0 else None
