"""Reading JSONL lines and their custom_id fast, without parsing whole lines when it can.

Merging a million results means a million custom_ids; a full ``json.loads`` of
each line is the slowest part. Lines written by gateways and by us start with
plain members (``{"id": "batch_req_…", "custom_id": "…"``), so the custom_id
is read with one anchored regular expression when every member before it is a
plain string, number or literal (so the key is certainly at the top level) and
its value has no escapes; any other line is parsed in full.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# Group 1 is the custom_id's bytes; a line it does not match needs custom_id_key.
PLAIN_HEAD = re.compile(
    rb'\s*\{\s*(?:"[^"\\]*"\s*:\s*(?:"[^"\\]*"|[-+.\w]+)\s*,\s*)*?'
    rb'"custom_id"\s*:\s*"([^"\\]*)"\s*[,}]'
)


class LineError(ValueError):
    """A line that cannot be what it claims to be; the message names file and line."""


def custom_id_key(raw: bytes) -> bytes | None:
    """The line's top-level custom_id as UTF-8 bytes (no decoding on the fast path)."""
    found = PLAIN_HEAD.match(raw)
    if found is not None:
        return found.group(1)
    try:
        line: Any = json.loads(raw)
    except ValueError:
        return None
    value = line.get("custom_id") if isinstance(line, dict) else None
    return value.encode("utf-8", "surrogatepass") if isinstance(value, str) else None


def custom_id_of(raw: bytes) -> str | None:
    """The line's top-level custom_id, or None if it has none (or is not a JSON object)."""
    key = custom_id_key(raw)
    return None if key is None else key.decode("utf-8", "surrogatepass")


def require_key(raw: bytes, label: str, number: int) -> bytes:
    key = custom_id_key(raw)
    if key is None:
        raise LineError(f"{label}:{number}: not a JSON object with a string custom_id")
    return key


def require_custom_id(raw: bytes, label: str, number: int) -> str:
    custom_id = custom_id_of(raw)
    if custom_id is None:
        raise LineError(f"{label}:{number}: not a JSON object with a string custom_id")
    return custom_id


def numbered_lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """(line number, bytes ending in a newline) of every non-blank line."""
    with path.open("rb") as stream:
        for number, raw in enumerate(stream, start=1):
            if raw.strip():
                yield number, raw if raw.endswith(b"\n") else raw + b"\n"


def custom_ids(path: Path) -> Iterator[tuple[int, str, bytes]]:
    """(line number, custom_id, line) of every request line of a JSONL file."""
    label = str(path)
    for number, raw in numbered_lines(path):
        yield number, require_custom_id(raw, label, number), raw
