"""Shard files written on a writer thread: kernel copies where it can, reads and writes if not."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import pytest

from shards import sink
from shards.files import ShardFiles
from shards.limits import ShardLimits
from shards.merge import merge_shards
from shards.split import split_jsonl
from tests.shards.helpers import ok, request, write_jsonl


def source(tmp_path: Path, n: int = 30) -> Path:
    return write_jsonl(tmp_path / "in.jsonl", (request(f"r{i}", "y" * i) for i in range(n)))


def test_without_a_kernel_copy_the_shards_are_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    limits = ShardLimits(max_requests=7)
    kernel = split_jsonl(source(tmp_path), tmp_path / "kernel", limits, count_tokens=False)

    def no_copy_file_range(*_: Any) -> int:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "copy_file_range", no_copy_file_range)
    fallback = split_jsonl(source(tmp_path), tmp_path / "plain", limits, count_tokens=False)

    assert fallback == kernel
    for spec in kernel.shards:
        assert (tmp_path / "plain" / spec.name).read_bytes() == (
            tmp_path / "kernel" / spec.name
        ).read_bytes()


def test_a_failed_write_fails_the_split_and_leaves_no_part_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def disk_full(*_: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(sink, "copy_range", disk_full)

    with pytest.raises(OSError, match="No space left"):
        split_jsonl(source(tmp_path), tmp_path / "s", ShardLimits(max_requests=7))
    # Nothing after the failure lands under a shard's name, and no part file stays.
    assert list((tmp_path / "s").iterdir()) == []


def test_a_failed_write_publishes_neither_merged_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = split_jsonl(source(tmp_path, 3), tmp_path / "s", ShardLimits(), count_tokens=False)
    shard = ShardFiles(
        tmp_path / "s" / plan.shards[0].name,
        write_jsonl(tmp_path / "results.jsonl", [ok(f"r{i}") for i in range(3)]),
        write_jsonl(tmp_path / "errors.jsonl", []),
    )

    def disk_full(*_: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(sink, "copy_range", disk_full)

    with pytest.raises(OSError, match="No space left"):
        merge_shards([shard], tmp_path / "out.jsonl", tmp_path / "err.jsonl")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "errors.jsonl",
        "in.jsonl",
        "results.jsonl",
        "s",
    ]
