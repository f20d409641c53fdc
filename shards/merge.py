"""Merge the shards' results and errors into one results file and one errors file.

Each custom_id lands exactly once. In ``input`` order (the default) every line
sits where its request sat in the input: shards are contiguous ranges of the
input, so each shard is put in order on its own (an index of its custom_ids,
the byte ranges of its result lines, then a pass over memory-mapped files) and
the shards are written one after the other; memory is bounded by one shard,
not by the job. ``gateway`` order copies the files as the gateway wrote them,
which is as fast as a copy, and only counts lines.

Follow-up rounds (resubmitted requests) replace the entries of the round
before them: the latest round that holds a custom_id wins, and the job's files
still hold each custom_id once.
"""

from __future__ import annotations

import json
import mmap
import os
from array import array
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Literal

from pydantic import BaseModel, ConfigDict

from shards.files import ShardFiles
from shards.lines import PLAIN_HEAD, LineError, numbered_lines, require_key
from shards.resubmit import is_transient

Order = Literal["input", "gateway"]
COPY_CHUNK = 1024 * 1024


class MergeError(ValueError):
    """The shards' files cannot be the results of their inputs; names file, line, custom_id."""


class MergeTally(BaseModel):
    model_config = ConfigDict(extra="forbid")

    requests: int = 0
    succeeded: int = 0
    failed: int = 0
    resubmitted: int = 0
    recovered: int = 0


@dataclass(frozen=True)
class _Entry:
    custom_id: bytes
    ok: bool
    raw: bytes


def _map(stack: ExitStack, path: Path) -> bytes | mmap.mmap:
    stream = stack.enter_context(path.open("rb"))
    if os.fstat(stream.fileno()).st_size == 0:
        return b""
    return stack.enter_context(mmap.mmap(stream.fileno(), 0, access=mmap.ACCESS_READ))


class _Outputs:
    """The two output files, written beside their names and published together."""

    def __init__(self, stack: ExitStack, results: Path, errors: Path) -> None:
        self.finals = (results, errors)
        self.parts = tuple(p.with_name(p.name + ".part") for p in self.finals)
        self.results = stack.enter_context(self.parts[0].open("wb"))
        self.errors = stack.enter_context(self.parts[1].open("wb"))

    def publish(self) -> None:
        self.results.close()
        self.errors.close()
        for part, final in zip(self.parts, self.finals, strict=True):
            os.replace(part, final)

    def discard(self) -> None:
        self.results.close()
        self.errors.close()
        for part in self.parts:
            part.unlink(missing_ok=True)


@dataclass
class _ShardIndex:
    """Where each of a shard's requests, in input order, sits in its results or errors file."""

    ids: list[bytes]
    offsets: array[int]
    lengths: array[int]
    in_errors: bytearray


def _name(key: bytes) -> str:
    return repr(key.decode("utf-8", "replace"))


def _index_shard(shard: ShardFiles) -> _ShardIndex:
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
                raise MergeError(f"{label}:{number}: custom_id={_name(key)} twice")
            position[key] = len(position)
    requests = len(position)
    offsets = array("q", [-1]) * requests
    lengths = array("q", [0]) * requests
    in_errors = bytearray(requests)
    for is_error, path in ((0, shard.results_path), (1, shard.errors_path)):
        label, offset = str(path), 0
        with path.open("rb") as stream:
            for number, raw in enumerate(stream, start=1):
                start, offset = offset, offset + len(raw)
                if raw.isspace():
                    continue
                found = plain(raw)
                key = found.group(1) if found else require_key(raw, label, number)
                where = position.get(key)
                if where is None:
                    raise MergeError(
                        f"{path}:{number}: custom_id={_name(key)} is not in {shard.input_path}"
                    )
                if offsets[where] >= 0:
                    raise MergeError(
                        f"{path}:{number}: custom_id={_name(key)} appears twice "
                        f"in the results and errors of {shard.input_path}"
                    )
                offsets[where], lengths[where], in_errors[where] = start, len(raw), is_error
    ids = list(position)  # insertion order is input order
    if -1 in offsets:
        raise MergeError(
            f"custom_id={_name(ids[offsets.index(-1)])} of {shard.input_path} is in neither "
            f"{shard.results_path} nor {shard.errors_path}"
        )
    return _ShardIndex(ids, offsets, lengths, in_errors)


def _ordered_shard(shard: ShardFiles) -> Iterator[_Entry]:
    """The shard's result and error lines in the order of its input."""
    index = _index_shard(shard)
    with ExitStack() as stack:
        sources = (_map(stack, shard.results_path), _map(stack, shard.errors_path))
        for where, start in enumerate(index.offsets):
            failed = index.in_errors[where]
            raw = sources[failed][start : start + index.lengths[where]]
            yield _Entry(index.ids[where], not failed, raw)


def _write_shard_in_order(shard: ShardFiles, outputs: _Outputs) -> tuple[int, int]:
    """One round's fast path: no entries, slices straight to the outputs; (ok, failed)."""
    index = _index_shard(shard)
    with ExitStack() as stack:
        sources = (_map(stack, shard.results_path), _map(stack, shard.errors_path))
        targets = (outputs.results, outputs.errors)
        for where, start in enumerate(index.offsets):
            failed = index.in_errors[where]
            raw = sources[failed][start : start + index.lengths[where]]
            targets[failed].write(raw if raw.endswith(b"\n") else raw + b"\n")
    failed_count = index.in_errors.count(1)
    return len(index.ids) - failed_count, failed_count


def _write(entry_raw: bytes, out: IO[bytes]) -> None:
    out.write(entry_raw if entry_raw.endswith(b"\n") else entry_raw + b"\n")


def _copy_counting(path: Path, out: IO[bytes]) -> int:
    """Append the file to ``out`` (adding a final newline if missing); its line count."""
    lines, last = 0, b"\n"
    with path.open("rb") as stream:
        while chunk := stream.read(COPY_CHUNK):
            out.write(chunk)
            lines += chunk.count(b"\n")
            last = chunk[-1:]
    if last != b"\n":
        out.write(b"\n")
        lines += 1
    return lines


def _count_lines(path: Path) -> int:
    """Lines of a shard input (written by split_jsonl: no blank lines, a final newline)."""
    lines = 0
    with path.open("rb") as stream:
        while chunk := stream.read(COPY_CHUNK):
            lines += chunk.count(b"\n")
    return lines


def merge_shards(
    shards: Sequence[ShardFiles], results_out: Path, errors_out: Path, *, order: Order = "input"
) -> MergeTally:
    """One round: every shard's results and errors into the two job files."""
    return merge_rounds([shards], results_out, errors_out, order=order)


def merge_rounds(
    rounds: Sequence[Sequence[ShardFiles]],
    results_out: Path,
    errors_out: Path,
    *,
    order: Order = "input",
) -> MergeTally:
    """All rounds into the two job files; a later round's entry replaces an earlier one's.

    ``rounds[0]`` are the shards of the job's input, in input order;
    ``rounds[k]`` the shards of the k-th follow-up input (written by
    ``select_resubmissions`` from round k-1's shards, so in input order too).
    """
    if not rounds or not rounds[0]:
        raise ValueError("nothing to merge: the first round has no shards")
    with ExitStack() as stack:
        outputs = _Outputs(stack, results_out, errors_out)
        try:
            if order == "gateway":
                tally = _merge_gateway(rounds, outputs)
            else:
                tally = _merge_input_order(rounds, outputs)
        except BaseException:
            outputs.discard()
            raise
        outputs.publish()
    return tally


def _merge_gateway(rounds: Sequence[Sequence[ShardFiles]], outputs: _Outputs) -> MergeTally:
    tally = MergeTally()
    last = len(rounds) - 1
    for number, shards in enumerate(rounds):
        for shard in shards:
            expected = _count_lines(shard.input_path)
            ok = _copy_counting(shard.results_path, outputs.results)
            if number == last:
                failed = _copy_counting(shard.errors_path, outputs.errors)
                resubmitted = 0
            else:
                failed, resubmitted = _copy_final_errors(shard, outputs.errors)
            if ok + failed + resubmitted != expected:
                raise MergeError(
                    f"{shard.results_path} and {shard.errors_path} hold {ok + failed + resubmitted}"
                    f" lines for the {expected} requests of {shard.input_path}"
                )
            tally.succeeded += ok
            tally.failed += failed
            if number == 0:
                tally.requests += expected
            else:
                tally.resubmitted += expected
                tally.recovered += ok
    return tally


def _copy_final_errors(shard: ShardFiles, out: IO[bytes]) -> tuple[int, int]:
    """Copy the error lines a later round did not resubmit; (copied, left out)."""
    copied = skipped = 0
    for number, raw in numbered_lines(shard.errors_path):
        try:
            line = json.loads(raw)
        except ValueError as exc:
            raise LineError(f"{shard.errors_path}:{number}: not JSON") from exc
        if is_transient(line, cancelled_by_deadline=shard.cancelled_by_deadline):
            skipped += 1
        else:
            out.write(raw)
            copied += 1
    return copied, skipped


class _Round:
    """One round's entries in input order, with a look at the next one."""

    def __init__(self, number: int, shards: Sequence[ShardFiles]) -> None:
        self.number = number
        self._entries = (e for shard in shards for e in _ordered_shard(shard))
        self.head: _Entry | None = next(self._entries, None)

    def take(self, custom_id: bytes) -> _Entry | None:
        if self.head is None or self.head.custom_id != custom_id:
            return None
        found, self.head = self.head, next(self._entries, None)
        return found


def _merge_input_order(rounds: Sequence[Sequence[ShardFiles]], outputs: _Outputs) -> MergeTally:
    if len(rounds) == 1:
        tally = MergeTally()
        for shard in rounds[0]:
            ok, failed = _write_shard_in_order(shard, outputs)
            tally.succeeded += ok
            tally.failed += failed
        tally.requests = tally.succeeded + tally.failed
        return tally
    requests = succeeded = resubmitted = recovered = 0
    first = (e for shard in rounds[0] for e in _ordered_shard(shard))
    later = [_Round(n, shards) for n, shards in enumerate(rounds[1:], start=1)]
    for entry in first:
        requests += 1
        final = entry
        for follow_up in later:
            replacement = follow_up.take(entry.custom_id)
            if replacement is None:
                continue
            if final.ok:
                raise MergeError(
                    f"custom_id={_name(entry.custom_id)} is in round {follow_up.number} "
                    "though it had succeeded before"
                )
            final = replacement
        if final is not entry:
            resubmitted += 1
            recovered += final.ok
        succeeded += final.ok
        _write(final.raw, outputs.results if final.ok else outputs.errors)
    for follow_up in later:
        if follow_up.head is not None:
            raise MergeError(
                f"round {follow_up.number}: custom_id={_name(follow_up.head.custom_id)} is not a "
                "request of the job, or its round is not in input order"
            )
    return MergeTally(
        requests=requests,
        succeeded=succeeded,
        failed=requests - succeeded,
        resubmitted=resubmitted,
        recovered=recovered,
    )
