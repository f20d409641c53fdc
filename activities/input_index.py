"""The custom_ids of a validated input, kept beside its results until they are collected.

A batch runs for up to a day, and an input's owner may rewrite it in that time
(a nightly schedule does). Collection joins on the index validation wrote, not
on the input, so what was paid for is collected whatever became of the file.

Validation and collection find it at one location derived from the results
location: nothing new crosses the workflow boundary, so a job started by an
older workflow still collects (from its input, as it always did).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from pathlib import Path

from temporalio import activity

from activities.results import ResultIntegrityError, read_input_ids_and_sha256
from activities.validation import ensure_unchanged
from contracts.steps import CollectResultsRequest
from storage import Storage

FORMAT = "batch-input-index/1"


def input_index_location(output_path: str, sha256: str) -> str:
    """A hidden name beside the results file, in the same store, and of this input.

    The checksum in the name keeps apart the indexes of two jobs of different
    inputs that were given one results location.
    """
    head, sep, name = output_path.rpartition("/")
    return f"{head}{sep}.{name}.{sha256[:16]}.input-index"


def write_input_index(
    path: Path, *, input_path: str, sha256: str, custom_ids: Iterable[str]
) -> None:
    """A header line, then the custom_ids in input order, one JSON string a line."""
    ids = list(custom_ids)
    header = {"format": FORMAT, "input": input_path, "sha256": sha256, "requests": len(ids)}
    with path.open("w", encoding="utf-8") as out:
        out.write(json.dumps(header) + "\n")
        for custom_id in ids:
            out.write(json.dumps(custom_id) + "\n")


def read_input_index(path: Path, *, sha256: str) -> dict[str, int] | None:
    """custom_id -> input line, or None when the index is not of the input validated."""
    with path.open("r", encoding="utf-8") as stream:
        try:
            header = json.loads(stream.readline())
        except ValueError:
            return None
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            return None
        if header.get("sha256") != sha256:
            return None
        ids: dict[str, int] = {}
        for number, line in enumerate(stream, start=1):
            try:
                custom_id = json.loads(line)
            except ValueError:
                return None
            if not isinstance(custom_id, str):
                return None
            ids[custom_id] = number
    return ids if len(ids) == header.get("requests") else None


async def ids_to_join(
    storage: Storage, request: CollectResultsRequest
) -> tuple[dict[str, int], str | None]:
    """The input's custom_ids, and the index they were read from (None: from the input)."""
    if request.input_sha256 is not None:
        index = input_index_location(request.output_path, request.input_sha256)
        ids = await _indexed_ids(storage, index, request.input_sha256)
        if ids is not None:
            return ids, index
    return await _input_ids(storage, request), None


async def _indexed_ids(storage: Storage, index: str, sha256: str) -> dict[str, int] | None:
    """None for a job validated by a worker that kept no index, or an index not of this input."""
    if not await storage.exists(index):
        return None
    async with storage.reading(index) as path:
        ids = await asyncio.to_thread(read_input_index, path, sha256=sha256)
    if ids is None:
        activity.logger.warning("%s is not an index of the input validated; ignored", index)
    return ids


async def _input_ids(storage: Storage, request: CollectResultsRequest) -> dict[str, int]:
    """Read from the input, which must then still be the bytes validated."""
    batch = request.batch
    async with storage.reading(request.input_path) as input_file:
        input_ids, found_sha256 = await asyncio.to_thread(read_input_ids_and_sha256, input_file)
    if request.input_sha256:
        ensure_unchanged(
            request.input_path,
            validated_sha256=request.input_sha256,
            found_sha256=found_sha256,
            since=f"batch {batch.id} was created",
            advice="its results cannot be matched to it (no input index was kept at "
            "validation); restore the file, or download "
            f"output file {batch.output_file_id} and error file "
            f"{batch.error_file_id} yourself",
        )
    if input_ids is None:
        raise ResultIntegrityError(
            f"{request.input_path}: a line no longer parses; not the input validated"
        )
    return input_ids
