"""Split a validated JSONL input into shard files that each fit one batch.

Streaming, one line in memory at a time, and deterministic: the same input and
limits give the same shards byte for byte, so a retried activity rewrites the
same files. Shards are contiguous ranges of the input, in order, which is what
lets the merge restore input order one shard at a time. Each shard file is
written beside its final name and renamed when complete; the plan is also
written as ``shards.json`` so a caller can pass one location instead of a list.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import IO, Any

from pydantic import BaseModel, ConfigDict, Field

from shards.limits import ShardLimits
from shards.lines import custom_id_of, numbered_lines
from shards.tokens import request_tokens

PLAN_NAME = "shards.json"


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
    def __init__(self, folder: Path, index: int, first_line: int) -> None:
        self.spec = ShardSpec(
            index=index,
            name=shard_name(index),
            first_line=first_line,
            last_line=first_line,
            requests=0,
            bytes=0,
        )
        self.final = folder / self.spec.name
        self.part = folder / (self.spec.name + ".part")
        self.stream: IO[bytes] = self.part.open("wb")

    def add(self, number: int, raw: bytes) -> None:
        self.stream.write(raw)
        self.spec.requests += 1
        self.spec.bytes += len(raw)
        self.spec.last_line = number

    def count_tokens(self, raw: bytes) -> None:
        line: Any = json.loads(raw)
        body = line.get("body") if isinstance(line, dict) else None
        if not isinstance(body, dict):
            return
        tokens = request_tokens(body, line.get("url"))
        self.spec.estimated_input_tokens += tokens.input_tokens
        if tokens.output_ceiling is None:
            self.spec.unlimited_requests += 1
        else:
            self.spec.output_token_ceiling += tokens.output_ceiling

    def close(self) -> ShardSpec:
        self.stream.close()
        os.replace(self.part, self.final)
        return self.spec

    def abandon(self) -> None:
        self.stream.close()
        self.part.unlink(missing_ok=True)


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
    ``count_tokens`` parses every line to estimate its tokens (for admission
    within an enqueued-token quota); without it, lines are only copied.
    Raises LineTooLarge, naming file, line and custom_id, for a request that
    alone exceeds ``limits.max_bytes``.
    """
    name = label or str(input_path)
    out_dir.mkdir(parents=True, exist_ok=True)
    specs: list[ShardSpec] = []
    writer: _ShardWriter | None = None
    total_bytes = 0
    try:
        for number, raw in numbered_lines(input_path):
            size = len(raw)
            if size > limits.max_bytes:
                raise LineTooLarge(name, number, custom_id_of(raw), size, limits.max_bytes)
            if writer is None or limits.full(writer.spec.requests, writer.spec.bytes, size):
                if writer is not None:
                    specs.append(writer.close())
                writer = _ShardWriter(out_dir, len(specs), number)
            writer.add(number, raw)
            if count_tokens:
                writer.count_tokens(raw)
            total_bytes += size
    except BaseException:
        if writer is not None:
            writer.abandon()
        raise
    if writer is not None:
        specs.append(writer.close())
    plan = SplitPlan(
        limits=limits, requests=sum(s.requests for s in specs), bytes=total_bytes, shards=specs
    )
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
