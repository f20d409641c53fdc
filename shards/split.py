"""Split a validated JSONL input into shard files that each fit one batch.

Streaming, a 4 MiB block in memory at a time (a longer line is held whole, up
to the byte limit), and deterministic: the same input and
limits give the same shards byte for byte, so a retried activity rewrites the
same files. Shards are contiguous ranges of the input, in order, which is what
lets the merge restore input order one shard at a time. Each shard file is
written beside its final name and renamed when complete; the plan is also
written as ``shards.json`` so a caller can pass one location instead of a list.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from io import FileIO
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from shards.limits import ShardLimits
from shards.lines import custom_id_of
from shards.sink import Sink, SinkFile
from shards.streams import after_newlines
from shards.tokens import request_tokens

PLAN_NAME = "shards.json"
Block = bytes | bytearray
BLOCK = 4 * 1024 * 1024


class ShardSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    index: int
    name: str = Field(description="File name inside the shard folder.")
    first_line: int = Field(description="Input line number of the shard's first request.")
    last_line: int
    requests: int
    bytes: int
    estimated_input_tokens: int = Field(
        default=0, description="Heuristic (shards.tokens): what the enqueued-token quota counts."
    )
    output_token_ceiling: int = Field(
        default=0, description="Sum of the requests' output limits (unlimited ones excluded)."
    )
    unlimited_requests: int = Field(default=0, description="Requests with no output limit.")

    def input_line(self, shard_line: int) -> int:
        """The input line of the shard's line ``shard_line`` (1-based), e.g. in a gateway error.

        Exact for a validated input, which has no blank lines.
        """
        return self.first_line + shard_line - 1


class SplitPlan(BaseModel):
    model_config = ConfigDict(extra="forbid")

    limits: ShardLimits
    requests: int
    bytes: int
    shards: list[ShardSpec]

    @property
    def estimated_input_tokens(self) -> int:
        return sum(s.estimated_input_tokens for s in self.shards)


class LineTooLarge(ValueError):
    """One request alone is over the byte limit: no shard can hold it."""

    def __init__(self, label: str, line: int, custom_id: str | None, size: int, limit: int) -> None:
        who = f"custom_id={custom_id!r}" if custom_id is not None else "custom_id unreadable"
        super().__init__(
            f"{label}:{line}: {who}: the request is {size} bytes, over the limit of {limit} "
            "bytes per batch file, so no batch can carry it; shorten it, or raise the "
            "limit (--max-batch-bytes) if the gateway accepts larger uploads"
        )
        self.label, self.line, self.custom_id, self.size, self.limit = (
            label,
            line,
            custom_id,
            size,
            limit,
        )


def shard_name(index: int) -> str:
    return f"shard-{index:05d}.jsonl"


class _ShardWriter:
    """One shard file being written; plain counters, as this runs once per request."""

    def __init__(self, sink: Sink, folder: Path, index: int, first_line: int) -> None:
        self.index, self.first_line, self.last_line = index, first_line, first_line
        self.requests = self.bytes = 0
        self.input_tokens = self.output_ceiling = self.unlimited = 0
        self.final = folder / shard_name(index)
        self.part = folder / (shard_name(index) + ".part")
        self.file = SinkFile(sink, self.part)

    def count_tokens(self, raw: bytes) -> None:
        line: Any = json.loads(raw)
        body = line.get("body") if isinstance(line, dict) else None
        if not isinstance(body, dict):
            return
        tokens = request_tokens(body, line.get("url"))
        self.input_tokens += tokens.input_tokens
        if tokens.output_ceiling is None:
            self.unlimited += 1
        else:
            self.output_ceiling += tokens.output_ceiling

    def close(self) -> ShardSpec:
        part, final = self.part, self.final
        self.file.close(then=lambda: os.replace(part, final))
        return ShardSpec(
            index=self.index,
            name=self.final.name,
            first_line=self.first_line,
            last_line=self.last_line,
            requests=self.requests,
            bytes=self.bytes,
            estimated_input_tokens=self.input_tokens,
            output_token_ceiling=self.output_ceiling,
            unlimited_requests=self.unlimited,
        )

    def abandon(self) -> None:
        """After the sink has stopped: nothing else writes the file any more."""
        if not self.file.closed:
            os.close(self.file.fd)
        self.part.unlink(missing_ok=True)


class _Splitter:
    """Shard boundaries and files; lines come one at a time or as ranges of whole lines."""

    def __init__(
        self, sink: Sink, source_fd: int, out_dir: Path, limits: ShardLimits, label: str
    ) -> None:
        self.sink, self.source_fd = sink, source_fd
        self.out_dir, self.limits, self.label = out_dir, limits, label
        self.specs: list[ShardSpec] = []
        self.writer: _ShardWriter | None = None
        self.line = 0
        self.bytes = 0

    def _shard_for(self, size: int) -> _ShardWriter:
        writer = self.writer
        if writer is None or self.limits.full(writer.requests, writer.bytes, size):
            if writer is not None:
                self.specs.append(writer.close())
            writer = _ShardWriter(self.sink, self.out_dir, len(self.specs), self.line + 1)
            self.writer = writer
        return writer

    def too_large(self, number: int, raw: Block) -> LineTooLarge:
        return LineTooLarge(
            self.label, number, custom_id_of(bytes(raw)), len(raw), self.limits.max_bytes
        )

    def add_line(self, raw: bytes, count_tokens: bool) -> None:
        """One line of the input (blank ones are counted, not written)."""
        if raw.isspace():
            self.line += 1
            return
        if not raw.endswith(b"\n"):
            raw += b"\n"
        if len(raw) > self.limits.max_bytes:
            raise self.too_large(self.line + 1, raw)
        writer = self._shard_for(len(raw))
        self.line += 1
        writer.file.write(raw)
        writer.requests += 1
        writer.bytes += len(raw)
        writer.last_line = self.line
        self.bytes += len(raw)
        if count_tokens:
            writer.count_tokens(raw)

    def add_block(self, block: Block, pos: int, end: int, at: int, count_tokens: bool) -> None:
        """``block[pos:end]``, whole lines none blank, found at input offset ``at + pos``.

        Cut at C speed with find and count, not line by line; each shard's part
        is copied from the input by the sink, not from this block.
        """
        while pos < end:
            writer = self._shard_for(block.index(b"\n", pos) + 1 - pos)
            room = self.limits.max_bytes - writer.bytes
            cut = end if pos + room >= end else block.rfind(b"\n", pos, pos + room) + 1
            if cut <= pos:  # not even one line fits: only an oversized one can do that
                raise self.too_large(self.line + 1, block[pos : block.index(b"\n", pos) + 1])
            lines = block.count(b"\n", pos, cut)
            wanted = self.limits.max_requests - writer.requests
            if lines > wanted:
                cut, lines = after_newlines(block, pos, cut, lines, wanted), wanted
            writer.file.copy_from(self.source_fd, at + pos, cut - pos)
            if count_tokens:
                for raw in bytes(block[pos:cut]).split(b"\n")[:-1]:
                    writer.count_tokens(raw)
            writer.requests += lines
            writer.bytes += cut - pos
            self.line += lines
            writer.last_line = self.line
            self.bytes += cut - pos
            pos = cut

    def finish(self) -> SplitPlan:
        if self.writer is not None:
            self.specs.append(self.writer.close())
            self.writer = None
        requests = sum(s.requests for s in self.specs)
        return SplitPlan(limits=self.limits, requests=requests, bytes=self.bytes, shards=self.specs)

    def abandon(self) -> None:
        """After the sink has stopped: no part file stays (a write that failed skips renames)."""
        if self.writer is not None:
            self.writer.abandon()
        for stale in self.out_dir.glob("shard-*.jsonl.part"):
            stale.unlink(missing_ok=True)


_BLANK_LINE = re.compile(rb"(?:^|\n)[ \t\r\f\v]*\n")
_LINE_STARTS_WITH_SPACE = re.compile(rb"\n[ \t\r\n\x0b\x0c]")


def _may_hold_blank_lines(block: Block, pos: int, end: int) -> bool:
    """A quick scan for a line that starts with whitespace; only then the exact test."""
    if block[pos : pos + 1].isspace() or _LINE_STARTS_WITH_SPACE.search(block, pos, end):
        return _BLANK_LINE.search(block[pos:end]) is not None
    return False


def _lines_of(block: Block, pos: int, end: int) -> Iterator[bytes]:
    """The lines of ``block[pos:end]``, split on newlines only (as reading line by line does)."""
    for line in bytes(block[pos:end]).split(b"\n")[:-1]:
        yield line + b"\n"


def _split(stream: FileIO, splitter: _Splitter, count_tokens: bool) -> None:
    """Read blocks; whole lines go by range, a line across two blocks as its own bytes.

    A line longer than the byte limit is refused before it is whole.
    """
    at = 0  # input offset of the block
    head: list[bytes] = []  # the start of a line begun in earlier blocks
    head_size = 0
    max_bytes = splitter.limits.max_bytes
    buffer = bytearray(BLOCK)  # one buffer for every block: no fresh pages to fault in
    while size := stream.readinto(buffer):
        block = buffer if size == len(buffer) else buffer[:size]
        first = block.find(b"\n") + 1
        if not first:
            head.append(bytes(block))
            head_size += len(block)
            if head_size > max_bytes:
                raise splitter.too_large(splitter.line + 1, b"".join(head))
            at += len(block)
            continue
        pos = 0
        if head:
            splitter.add_line(b"".join([*head, block[:first]]), count_tokens)
            head, head_size, pos = [], 0, first
        end = block.rfind(b"\n") + 1
        if pos < end:
            if _may_hold_blank_lines(block, pos, end):
                for raw in _lines_of(block, pos, end):
                    splitter.add_line(raw, count_tokens)
            else:
                splitter.add_block(block, pos, end, at, count_tokens)
        if end < len(block):
            head, head_size = [bytes(block[end:])], len(block) - end
        at += len(block)
    if head:
        splitter.add_line(b"".join(head), count_tokens)


def split_jsonl(
    input_path: Path,
    out_dir: Path,
    limits: ShardLimits,
    *,
    label: str | None = None,
    count_tokens: bool = True,
) -> SplitPlan:
    """Write ``out_dir/shard-NNNNN.jsonl`` files within ``limits`` and return their plan.

    A shard ends when the next request would take it over either limit.
    Lines are cut in blocks with C-speed searches and the shards copied from
    the input by the kernel on a second thread, at about twice the cost of a
    copy; ``count_tokens`` also parses every line to estimate its tokens (for
    admission within an enqueued-token quota), which costs far more.
    Raises LineTooLarge, naming file, line and custom_id, for a request that
    alone exceeds ``limits.max_bytes``.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    with input_path.open("rb", buffering=0) as stream:
        splitter = _Splitter(Sink(), stream.fileno(), out_dir, limits, label or str(input_path))
        try:
            with splitter.sink:
                _split(stream, splitter, count_tokens)
                plan = splitter.finish()
        except BaseException:
            splitter.abandon()
            raise
    write_plan(out_dir, plan)
    return plan


def write_plan(out_dir: Path, plan: SplitPlan) -> Path:
    path = out_dir / PLAN_NAME
    part = out_dir / (PLAN_NAME + ".part")
    part.write_text(plan.model_dump_json(indent=1))
    os.replace(part, path)
    return path


def read_plan(out_dir: Path) -> SplitPlan:
    return SplitPlan.model_validate_json((out_dir / PLAN_NAME).read_text())
