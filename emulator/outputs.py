"""Lines of output and error files, in the Batch API's format, and the files themselves.

A line is ``{"id", "custom_id", "response": {"status_code", "request_id", "body"},
"error"}``. A request answered with 4xx/5xx keeps its response (with the error
object as body) and goes to the error file; a request that never ran (expiry, or
an unreachable upstream) has ``response: null`` and a top-level ``error``.
Files are written in an order derived from a hash of the custom_id, never in
input order, so clients that rely on order break here rather than in production.
"""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Literal

from emulator.backends import LineOutcome
from emulator.clock import wall_now
from emulator.models import BatchRecord, FileRecord, result_file_id
from emulator.store import Store, dumps


def _hex(batch_id: str, custom_id: str, salt: str) -> str:
    return hashlib.sha256(f"{salt}/{batch_id}/{custom_id}".encode()).hexdigest()


def sort_key(batch_id: str, custom_id: str) -> int:
    return int(_hex(batch_id, custom_id, "order")[:15], 16)


def result_line(batch_id: str, custom_id: str, outcome: LineOutcome) -> str:
    response = None
    if outcome.status is not None:
        response = {
            "status_code": outcome.status,
            "request_id": f"req_{_hex(batch_id, custom_id, 'request')[:32]}",
            "body": outcome.body,
        }
    return dumps(
        {
            "id": f"batch_req_{_hex(batch_id, custom_id, 'line')[:32]}",
            "custom_id": custom_id,
            "response": response,
            "error": outcome.error,
        }
    )


def expired_line(batch_id: str, custom_id: str) -> str:
    return result_line(
        batch_id,
        custom_id,
        LineOutcome(
            None,
            None,
            {
                "code": "batch_expired",
                "message": "This request could not be executed before the completion window "
                "expired.",
            },
        ),
    )


def _write(
    store: Store, record: BatchRecord, kind: Literal["output", "error"], expired: bool
) -> int:
    """Blocking: stream result lines into the ``.part`` blob, return its size."""
    file_id = result_file_id(record.id, kind)
    path: Path = store.part_path(file_id)
    unfinished = (lambda cid: expired_line(record.id, cid)) if expired and kind == "error" else None
    size = 0
    with path.open("wb") as fh:
        for line in store.iter_result_lines(record.id, ok=kind == "output", unfinished=unfinished):
            data = (line + "\n").encode()
            fh.write(data)
            size += len(data)
        fh.flush()
    return size


async def write_result_files(
    store: Store, record: BatchRecord, *, expired: bool, always_error_file: bool
) -> list[FileRecord]:
    """Write the output and error files a terminal batch points to, set their ids.

    An empty file is dropped (its id stays null) unless ``always_error_file``
    asks for the 0-byte error file Azure leaves behind on success.
    """
    files: list[FileRecord] = []
    for kind in ("output", "error"):
        size = await asyncio.to_thread(_write, store, record, kind, expired)
        file_id = result_file_id(record.id, kind)
        if size == 0 and not (kind == "error" and always_error_file):
            store.part_path(file_id).unlink(missing_ok=True)
            continue
        files.append(
            FileRecord(
                id=file_id,
                filename=f"{record.id}_{kind}.jsonl",
                purpose="batch_output",
                bytes=size,
                created_at=wall_now(),
            )
        )
        if kind == "output":
            record.output_file_id = file_id
        else:
            record.error_file_id = file_id
    return files
