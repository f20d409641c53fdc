"""Merge the shards' results and errors into one results file and one errors file.

Each custom_id lands exactly once. In ``input`` order (the default) every line
sits where its request sat in the input. Each shard's child writes its two
files in the shard's input order (collect_results joins on the input's index
and writes in its order) and shards are contiguous ranges of the input, so
one round is a concatenation of the shards' files in shard order, checked by
line counts: about the cost of a copy, no Python per line.

Follow-up rounds (resubmitted requests) replace the error lines of the round
before them: the latest round that holds a custom_id wins. A recovered request
takes its input place in the results file, a request that failed again its
place in the errors file; only the shards with resubmitted requests are read
line by line (their errors, and a search for the recovered ones' input lines).
``gateway`` order skips that splice: each round's files follow the round
before them.

Lines that joined no request (``custom_id`` null, written last in a shard's
errors file by collect_results) are kept at the end of that shard's errors.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from shards.files import ShardFiles
from shards.lines import LineError, custom_id_key, numbered_lines, require_key
from shards.resubmit import is_transient
from shards.shard_index import (
    Entry,
    MergeError,
    index_shard,
    input_positions,
    is_unjoined,
    name_of,
    ordered_shard,
)
from shards.sink import Sink, SinkFile
from shards.streams import LineCopier, copy_counting, count_lines, line_positions

__all__ = ["MergeError", "MergeTally", "Order", "merge_rounds", "merge_shards"]

Order = Literal["input", "gateway"]


class MergeTally(BaseModel):
    model_config = ConfigDict(extra="forbid")

    requests: int = 0
    succeeded: int = 0
    failed: int = 0
    resubmitted: int = 0
    recovered: int = 0
    unjoined: int = 0
    """Gateway lines that joined no request, kept in the errors file (not requests)."""


class _Outputs:
    """The two output files, written through a sink beside their names, published together."""

    def __init__(self, sink: Sink, results: Path, errors: Path) -> None:
        self.finals = (results, errors)
        self.parts = tuple(p.with_name(p.name + ".part") for p in self.finals)
        self.results = SinkFile(sink, self.parts[0])
        self.errors = SinkFile(sink, self.parts[1])

    def publish(self) -> None:
        """Both renamed once both are written and closed (on the sink's thread)."""
        self.results.close()
        self.errors.close(then=self._rename)

    def _rename(self) -> None:
        for part, final in zip(self.parts, self.finals, strict=True):
            os.replace(part, final)

    def discard(self) -> None:
        """After the sink has stopped: nothing else writes the files any more."""
        for file in (self.results, self.errors):
            if not file.closed:
                os.close(file.fd)
        for part in self.parts:
            part.unlink(missing_ok=True)


def _write(entry_raw: bytes, out: SinkFile) -> None:
    out.write(entry_raw if entry_raw.endswith(b"\n") else entry_raw + b"\n")


def _expected(shard: ShardFiles) -> int:
    return shard.requests if shard.requests is not None else count_lines(shard.input_path)


def _unjoined_tail(shard: ShardFiles, error_lines: int, extra: int) -> bool:
    """Whether the errors file's last ``extra`` lines are lines that joined no request."""
    if extra <= 0 or extra > error_lines:
        return False
    first = error_lines - extra
    with shard.errors_path.open("rb") as stream:
        tail = [raw for n, raw in enumerate(stream) if n >= first]
    return all(is_unjoined(raw) for raw in tail)


def _checked(shard: ShardFiles, expected: int, ok: int, error_lines: int) -> int:
    """The unjoined lines of a shard whose counts do not add up; else names what is wrong."""
    extra = ok + error_lines - expected
    if extra == 0:
        return 0
    if _unjoined_tail(shard, error_lines, extra):
        return extra
    # Read line by line: raises naming the file, line and custom_id; or finds the
    # extra lines are kept unjoined ones, elsewhere than last (an older collect).
    if len(index_shard(shard).unjoined) == extra:
        return extra
    raise MergeError(
        f"{shard.results_path} and {shard.errors_path} hold {ok + error_lines} lines for the "
        f"{expected} requests of {shard.input_path}"
    )


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
    Each shard's files must be in its input order, as collect_results writes them.
    """
    if not rounds or not rounds[0]:
        raise ValueError("nothing to merge: the first round has no shards")
    sink = Sink()
    outputs = _Outputs(sink, results_out, errors_out)
    try:
        with sink:
            if order == "gateway":
                tally = _merge_gateway(rounds, outputs)
            else:
                tally = _merge_input_order(rounds, outputs)
            outputs.publish()
    except BaseException:
        outputs.discard()
        raise
    return tally


def _merge_gateway(rounds: Sequence[Sequence[ShardFiles]], outputs: _Outputs) -> MergeTally:
    tally = MergeTally()
    last = len(rounds) - 1
    for number, shards in enumerate(rounds):
        for shard in shards:
            expected = _expected(shard)
            ok = copy_counting(shard.results_path, outputs.results)
            if number == last:
                failed = copy_counting(shard.errors_path, outputs.errors)
                resubmitted = 0
            else:
                failed, resubmitted = _copy_final_errors(shard, outputs.errors)
            unjoined = _checked(shard, expected, ok, failed + resubmitted)
            tally.succeeded += ok
            tally.failed += failed - unjoined
            tally.unjoined += unjoined
            if number == 0:
                tally.requests += expected
            else:
                tally.resubmitted += expected
                tally.recovered += ok
    return tally


def _copy_final_errors(shard: ShardFiles, out: SinkFile) -> tuple[int, int]:
    """Copy the error lines a later round did not resubmit; (copied, left out)."""
    copied = skipped = 0
    for number, raw in numbered_lines(shard.errors_path):
        try:
            line = json.loads(raw)
        except ValueError as exc:
            raise LineError(f"{shard.errors_path}:{number}: not JSON") from exc
        if line.get("custom_id") is not None and is_transient(
            line, cancelled_by_deadline=shard.cancelled_by_deadline
        ):
            skipped += 1
        else:
            out.write(raw)
            copied += 1
    return copied, skipped


class _Round:
    """One follow-up round's entries in input order, with a look at the next one."""

    def __init__(self, number: int, shards: Sequence[ShardFiles]) -> None:
        self.number = number
        self.unjoined: list[bytes] = []
        self._entries = (e for shard in shards for e in ordered_shard(shard, self.unjoined))
        self.head: Entry | None = next(self._entries, None)

    def take(self, custom_id: bytes) -> Entry | None:
        if self.head is None or self.head.custom_id != custom_id:
            return None
        found, self.head = self.head, next(self._entries, None)
        return found


def _merge_input_order(rounds: Sequence[Sequence[ShardFiles]], outputs: _Outputs) -> MergeTally:
    tally = MergeTally()
    later = [_Round(n, shards) for n, shards in enumerate(rounds[1:], start=1)]
    for shard in rounds[0]:
        if any(r.head is not None for r in later):
            _splice_shard(shard, later, outputs, tally)
        else:
            _concatenate_shard(shard, outputs, tally)
    for follow_up in later:
        if follow_up.head is not None:
            raise MergeError(
                f"round {follow_up.number}: custom_id={name_of(follow_up.head.custom_id)} is not a "
                "request of the job that failed before, or its round is not in input order"
            )
        for raw in follow_up.unjoined:
            outputs.errors.write(raw)
        tally.unjoined += len(follow_up.unjoined)
    tally.failed = tally.requests - tally.succeeded
    return tally


def _concatenate_shard(shard: ShardFiles, outputs: _Outputs, tally: MergeTally) -> None:
    """No request of this shard was sent again: its two files as they are."""
    expected = _expected(shard)
    ok = copy_counting(shard.results_path, outputs.results)
    error_lines = copy_counting(shard.errors_path, outputs.errors)
    tally.unjoined += _checked(shard, expected, ok, error_lines)
    tally.requests += expected
    tally.succeeded += ok


def _splice_shard(
    shard: ShardFiles, later: list[_Round], outputs: _Outputs, tally: MergeTally
) -> None:
    """The shard's files with each resubmitted request's last outcome in its place.

    A request failed here sits in the errors file after ``k`` other failures
    at input line ``p``: ``p - k`` successes come before it in the results
    file, which is where a recovered one goes.
    """
    expected = _expected(shard)
    errors: list[tuple[bytes, bytes]] = []
    unjoined: list[bytes] = []
    for number, raw in numbered_lines(shard.errors_path):
        key = custom_id_key(raw)
        if key is None and is_unjoined(raw):
            unjoined.append(raw)
        else:
            errors.append((require_key(raw, str(shard.errors_path), number), raw))
    recovered: list[tuple[int, bytes]] = []  # (failures before it, line)
    for k, (key, raw) in enumerate(errors):
        final: Entry | None = None
        for follow_up in later:
            replacement = follow_up.take(key)
            if replacement is None:
                continue
            if final is not None and final.ok:
                raise MergeError(
                    f"custom_id={name_of(key)} is in round {follow_up.number} "
                    "though it had succeeded before"
                )
            final = replacement
        if final is None:
            _write(raw, outputs.errors)
            continue
        tally.resubmitted += 1
        if final.ok:
            recovered.append((k, final.raw))
        else:
            _write(final.raw, outputs.errors)
    for raw in unjoined:
        _write(raw, outputs.errors)
    copier = LineCopier(shard.results_path, outputs.results)
    if recovered:
        places = _places(shard, [key for key, _ in errors])
        for k, raw in recovered:
            copier.copy_lines(places[k] - k - copier.copied)
            _write(raw, outputs.results)
    copier.copy_rest()
    ok = copier.copied
    _checked(shard, expected, ok, len(errors) + len(unjoined))
    tally.requests += expected
    tally.succeeded += ok + len(recovered)
    tally.recovered += len(recovered)
    tally.unjoined += len(unjoined)


def _places(shard: ShardFiles, keys: list[bytes]) -> list[int]:
    """The input lines of the shard's failures, which its errors file holds in input order."""
    found = line_positions(shard.input_path, keys)
    if found is not None:
        return found
    position = input_positions(shard)
    places: list[int] = []
    for key in keys:
        if key not in position:
            raise MergeError(
                f"{shard.errors_path}: custom_id={name_of(key)} is not in {shard.input_path}"
            )
        if places and position[key] <= places[-1]:
            raise MergeError(
                f"{shard.errors_path}: custom_id={name_of(key)} is out of input order; "
                "the shard was collected by a worker that wrote the gateway's order"
            )
        places.append(position[key])
    return places
