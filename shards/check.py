"""The whole input checked in one streaming pass, before any shard is written or uploaded.

Each shard's child checks its own file again before its upload, but it sees
only its shard: a custom_id repeated in another shard, or a bad line in a late
shard, would be found after earlier shards were billed. This pass checks every
line as the child will (JSON, fields, method and url, model, size) and the
custom_ids across the whole input, so a job that would fail part way is
refused before anything is sent.

Memory is bounded whatever the input's size: each custom_id becomes a 16-byte
blake2b digest, written with its line number and offset to one of a few
partition files on disk (by the digest's first byte); after the pass each
partition is read back alone into a dict to find repeats. So memory holds one
partition (about a million ids at most for a 200 MiB input), never the input's
ids; disk holds 32 bytes per request. A repeat is reported with both line
numbers and its custom_id (read back from the input at the stored offset). Two
different ids with the same 128-bit digest are beyond any input's reach (about
1 in 10^26 for a million ids).
"""

from __future__ import annotations

import hashlib
import json
import struct
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from shards.limits import MIB, ShardLimits
from shards.lines import custom_id_of

MAX_REPORTED = 20
"""Problems listed in one refusal, the first ones by line; the rest are counted."""
_BOM = b"\xef\xbb\xbf"
_RECORD = struct.Struct("<16sQQ")  # digest, line number, byte offset of the line
_pack = _RECORD.pack
_blake2b = hashlib.blake2b
_PARTITION_INPUT_BYTES = 32 * MIB
_MAX_PARTITIONS = 256
_WRITE_BUFFER = 256 * 1024


@dataclass(frozen=True)
class LineProblem:
    """One thing wrong with the input: where (line, custom_id when known) and what."""

    line: int | None
    custom_id: str | None
    message: str

    def where(self, label: str) -> str:
        at = f"{label}:{self.line}" if self.line is not None else label
        who = f" custom_id={self.custom_id!r}" if self.custom_id is not None else ""
        return f"{at}:{who} {self.message}"


@dataclass
class InputRejected(ValueError):
    """The input would fail in some shard: nothing was uploaded, no batch was made."""

    label: str
    problems: list[LineProblem] = field(default_factory=list)
    more: int = 0

    @property
    def first(self) -> LineProblem:
        return self.problems[0]

    def __str__(self) -> str:
        count = len(self.problems) + self.more
        shown = "\n".join(f"  {p.where(self.label)}" for p in self.problems)
        extra = f"\n  ... and {self.more} more" if self.more else ""
        return (
            f"{self.label}: {count} problem(s) in the whole input, nothing was uploaded:\n"
            f"{shown}{extra}"
        )


@dataclass(frozen=True)
class CheckedInput:
    """What the pass found in a good input: the split will make ``shards`` batches."""

    requests: int
    bytes: int
    shards: int
    models: tuple[str, ...]


def request_field_problems(request: dict[str, Any], endpoint: str) -> Iterator[str]:
    """What is wrong with one request's method, url, body and model (custom_id aside).

    The rules each batch's own check applies (activities/validation.py), so the
    whole-input pass refuses exactly what a shard would.
    """
    if request.get("method") != "POST":
        yield f"field 'method': must be \"POST\", got {request.get('method')!r}"
    if request.get("url") != endpoint:
        yield f"field 'url': must equal the batch endpoint {endpoint!r}, got {request.get('url')!r}"
    body = request.get("body")
    if not isinstance(body, dict):
        yield "field 'body': missing or not a JSON object; put the request there"
        return
    if model_of(request) is None:
        yield "field 'body.model': missing or not a string; name the model"


def model_of(request: dict[str, Any]) -> str | None:
    body = request.get("body")
    model = body.get("model") if isinstance(body, dict) else None
    return model if isinstance(model, str) and model else None


def too_large_reason(size: int, limit: int) -> str:
    return (
        f"the request is {size} bytes, over the limit of {limit} bytes per batch file, so no "
        "batch can carry it; shorten it, or raise the limit (--max-batch-bytes) if the gateway "
        "accepts larger uploads"
    )


class _Partitions:
    """custom_id digests on disk, in a few files by first byte, to find repeats after the pass."""

    def __init__(self, folder: Path, count: int) -> None:
        self.count = count
        self.paths = [folder / f"ids-{n:03d}" for n in range(count)]
        self.files: list[IO[bytes]] = [p.open("wb", buffering=_WRITE_BUFFER) for p in self.paths]

    def add(self, custom_id: str, line: int, offset: int) -> None:
        key = _blake2b(custom_id.encode("utf-8", "surrogatepass"), digest_size=16).digest()
        self.files[key[0] % self.count].write(_pack(key, line, offset))

    def close(self) -> None:
        for file in self.files:
            file.close()

    def repeats(self, most: int) -> tuple[list[tuple[int, int, int]], int]:
        """(line, offset, line of the first use) of the first ``most`` repeats, and how many."""
        found: list[tuple[int, int, int]] = []
        total = 0
        for path in self.paths:
            first: dict[bytes, int] = {}
            in_partition = 0
            for key, line, offset in _RECORD.iter_unpack(path.read_bytes()):
                earlier = first.setdefault(key, line)
                if earlier != line:
                    total += 1
                    in_partition += 1
                    # Records are in line order: a partition's first repeats are its earliest.
                    if in_partition <= most:
                        found.append((line, offset, earlier))
        found.sort()
        return found[:most], total


def _partitions_for(size: int) -> int:
    return max(1, min(_MAX_PARTITIONS, size // _PARTITION_INPUT_BYTES + 1))


def _line_at(path: Path, offset: int) -> bytes:
    with path.open("rb") as stream:
        stream.seek(offset)
        return stream.readline()


class _Pass:
    """The per-line rules, and the shards the split will cut (one model per batch)."""

    def __init__(self, endpoint: str, limits: ShardLimits, ids: _Partitions) -> None:
        self.endpoint, self.limits, self.ids = endpoint, limits, ids
        self.problems: list[LineProblem] = []
        self.more = 0
        self.requests = self.size = 0
        self.shards = 0
        self.shard_requests = self.shard_bytes = 0
        self.shard_model: tuple[str, int] | None = None
        self.models: dict[str, None] = {}

    def add(self, line: int, message: str, custom_id: str | None = None) -> None:
        if len(self.problems) < MAX_REPORTED:
            self.problems.append(LineProblem(line, custom_id, message))
        else:
            self.more += 1

    @property
    def full(self) -> bool:
        """Enough problems to report: the rest of the input need not be read."""
        return len(self.problems) >= MAX_REPORTED

    def line(self, number: int, offset: int, raw: bytes) -> None:
        if number == 1 and raw.startswith(_BOM):
            self.add(1, "starts with a UTF-8 byte order mark (BOM); save the file without it")
            raw = raw[len(_BOM) :]
        if raw.isspace():
            return  # the split leaves blank lines out
        size = len(raw) if raw.endswith(b"\n") else len(raw) + 1
        self.requests += 1
        self.size += size
        if size > self.limits.max_bytes:
            self.add(number, too_large_reason(size, self.limits.max_bytes), custom_id_of(raw))
            return
        self._shard_for(size)
        try:
            request: Any = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            self.add(number, f"not UTF-8 (byte {exc.start}: {raw[exc.start : exc.start + 1]!r})")
            return
        except json.JSONDecodeError as exc:
            self.add(number, f"not JSON: {exc.msg} at column {exc.colno}")
            return
        if not isinstance(request, dict):
            self.add(number, f"a request must be a JSON object, got {type(request).__name__}")
            return
        custom_id = request.get("custom_id")
        shown = custom_id if isinstance(custom_id, str) and custom_id else None
        if shown is None:
            self.add(number, "field 'custom_id': missing or not a non-empty string")
        else:
            self.ids.add(shown, number, offset)
        model = model_of(request)
        # The rules in one test first: this runs a million times, a problem rarely.
        if request.get("method") != "POST" or request.get("url") != self.endpoint or not model:
            for message in request_field_problems(request, self.endpoint):
                self.add(number, message, shown)
        if model is not None:
            self._one_model_a_batch(number, model, shown)

    def _shard_for(self, size: int) -> None:
        """Follow the split's cuts (shards.split): a shard ends when the line would not fit."""
        if self.shards == 0 or self.limits.full(self.shard_requests, self.shard_bytes, size):
            self.shards += 1
            self.shard_requests = self.shard_bytes = 0
            self.shard_model = None
        self.shard_requests += 1
        self.shard_bytes += size

    def _one_model_a_batch(self, number: int, model: str, custom_id: str | None) -> None:
        if self.shard_model is None:
            self.models.setdefault(model, None)
            self.shard_model = (model, number)
        elif self.shard_model[0] != model:
            running, since = self.shard_model
            self.add(
                number,
                f"field 'body.model': {model!r}, but batch {self.shards} (from line {since}) "
                f"runs {running!r}; one batch runs one model: keep each model's requests "
                "together, or run one job per model",
                custom_id,
            )


def check_input(
    path: Path, *, endpoint: str, limits: ShardLimits, label: str | None = None
) -> CheckedInput:
    """Check every line and the custom_ids across the whole input, reading it once.

    Raises InputRejected listing the first problems in line order (the first
    one names its line and custom_id): lines that are not JSON objects, a
    missing or repeated custom_id, a method, url, body or model a batch would
    refuse, a request over ``limits.max_bytes``, two models in what the split
    (with the same ``limits``) would make one batch. Blank lines are allowed:
    the split leaves them out. Memory is bounded (see the module docstring).
    """
    label = label or str(path)
    size = path.stat().st_size
    with tempfile.TemporaryDirectory(prefix="input-check-") as folder:
        ids = _Partitions(Path(folder), _partitions_for(size))
        checking = _Pass(endpoint, limits, ids)
        try:
            _read(path, checking)
        finally:
            ids.close()
        repeats, total = ids.repeats(MAX_REPORTED)
        for line, offset, earlier in repeats:
            checking.problems.append(
                LineProblem(
                    line,
                    custom_id_of(_line_at(path, offset)),
                    f"field 'custom_id': duplicate of line {earlier}",
                )
            )
        checking.more += total - len(repeats)
    if checking.requests == 0 and not checking.problems:
        checking.problems.append(LineProblem(None, None, "the file holds no requests"))
    if checking.problems:
        ordered = sorted(checking.problems, key=lambda p: p.line or 0)
        checking.more += max(0, len(ordered) - MAX_REPORTED)
        raise InputRejected(label, ordered[:MAX_REPORTED], checking.more)
    return CheckedInput(
        requests=checking.requests,
        bytes=checking.size,
        shards=checking.shards,
        models=tuple(checking.models),
    )


def _read(path: Path, checking: _Pass) -> None:
    """Feed every line to the pass, until the end or enough problems to report."""
    offset = 0
    with path.open("rb") as stream:
        for number, raw in enumerate(stream, start=1):
            checking.line(number, offset, raw)
            offset += len(raw)
            if checking.full:
                return
