"""Reading one shard line by line: the exact, slower path of the merge.

Used where bytes alone cannot say enough: to name what is wrong in a shard
whose line counts do not add up, and to put a follow-up round's small shards
in input order. An index of the shard's input (custom_id -> position), then
the byte range of each result line, read from memory-mapped files.
"""

from __future__ import annotations

import json
import mmap
import os
from array import array
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shards.files import ShardFiles
from shards.lines import PLAIN_HEAD, require_key


class MergeError(ValueError):
    """The shards' files cannot be the results of their inputs; names file, line, custom_id."""


@dataclass(frozen=True)
class Entry:
    """One request's line in a shard's files, met in input order."""

    custom_id: bytes
    ok: bool
    raw: bytes


def _map(stack: ExitStack, path: Path) -> bytes | mmap.mmap:
    stream = stack.enter_context(path.open("rb"))
    if os.fstat(stream.fileno()).st_size == 0:
        return b""
    return stack.enter_context(mmap.mmap(stream.fileno(), 0, access=mmap.ACCESS_READ))


@dataclass
class _ShardIndex:
    """Where each of a shard's requests, in input order, sits in its results or errors file."""

    ids: list[bytes]
    offsets: array[int]
    lengths: array[int]
    in_errors: bytearray
    unjoined: list[bytes] = field(default_factory=list)


def name_of(key: bytes) -> str:
    return repr(key.decode("utf-8", "replace"))


def is_unjoined(raw: bytes) -> bool:
    """A line collect_results kept though it joined no request (custom_id null)."""
    try:
        line: Any = json.loads(raw)
    except ValueError:
        return False
    return isinstance(line, dict) and "custom_id" in line and line["custom_id"] is None


def input_positions(shard: ShardFiles) -> dict[bytes, int]:
    """custom_id -> 0-based line of the shard's input, read line by line."""
    position: dict[bytes, int] = {}
    label = str(shard.input_path)
    plain = PLAIN_HEAD.match
    with shard.input_path.open("rb") as stream:
        for number, raw in enumerate(stream, start=1):
            if raw.isspace():
                continue
            found = plain(raw)
            key = found.group(1) if found else require_key(raw, label, number)
            if key in position:
                raise MergeError(f"{label}:{number}: custom_id={name_of(key)} twice")
            position[key] = len(position)
    return position


def index_shard(shard: ShardFiles) -> _ShardIndex:
    """Every line of the shard's files placed by custom_id; files in any order."""
    position = input_positions(shard)
    plain = PLAIN_HEAD.match
    requests = len(position)
    offsets = array("q", [-1]) * requests
    lengths = array("q", [0]) * requests
    in_errors = bytearray(requests)
    unjoined: list[bytes] = []
    for is_error, path in ((0, shard.results_path), (1, shard.errors_path)):
        label, offset = str(path), 0
        with path.open("rb") as stream:
            for number, raw in enumerate(stream, start=1):
                start, offset = offset, offset + len(raw)
                if raw.isspace():
                    continue
                found = plain(raw)
                if not found and is_error and is_unjoined(raw):
                    unjoined.append(raw if raw.endswith(b"\n") else raw + b"\n")
                    continue
                key = found.group(1) if found else require_key(raw, label, number)
                where = position.get(key)
                if where is None:
                    raise MergeError(
                        f"{path}:{number}: custom_id={name_of(key)} is not in {shard.input_path}"
                    )
                if offsets[where] >= 0:
                    raise MergeError(
                        f"{path}:{number}: custom_id={name_of(key)} appears twice "
                        f"in the results and errors of {shard.input_path}"
                    )
                offsets[where], lengths[where], in_errors[where] = start, len(raw), is_error
    ids = list(position)  # insertion order is input order
    if -1 in offsets:
        raise MergeError(
            f"custom_id={name_of(ids[offsets.index(-1)])} of {shard.input_path} is in neither "
            f"{shard.results_path} nor {shard.errors_path}"
        )
    return _ShardIndex(ids, offsets, lengths, in_errors, unjoined)


def ordered_shard(shard: ShardFiles, unjoined: list[bytes]) -> Iterator[Entry]:
    """The shard's result and error lines in the order of its input (files in any order)."""
    index = index_shard(shard)
    unjoined.extend(index.unjoined)
    with ExitStack() as stack:
        sources = (_map(stack, shard.results_path), _map(stack, shard.errors_path))
        for where, start in enumerate(index.offsets):
            failed = index.in_errors[where]
            raw = sources[failed][start : start + index.lengths[where]]
            yield Entry(index.ids[where], not failed, raw)
