"""Benchmark: the whole-input check (shards.check.check_input) against a plain read.

Generates an input of small chat requests (bench.shard_merge.write_input), then,
each timed ``--repeat`` times (the best is reported: other work on the
machine only ever adds):
- read: the file read once in 1 MiB chunks, the baseline of the same run;
- lines: the file read line by line, doing nothing with the lines;
- check: ``check_input`` (every line parsed and checked, custom_ids unique across
  the input, shards counted as the split cuts them).
Peak RSS of this process is sampled with psutil every 10 ms during each step,
against the RSS before it; tracemalloc's peak (Python's own allocations) is
measured in one extra, untimed run of the check. The partition files' size on
disk is printed too.

    python -m bench.validation_pass [--requests 1000000] [--shard-requests 50000]
                                    [--repeat 3]
"""

from __future__ import annotations

import argparse
import tempfile
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import psutil

from bench.shard_merge import MB, PeakRss, Timing, timed, write_input
from shards.check import check_input
from shards.limits import ShardLimits

T = TypeVar("T")
CHUNK = 1024 * 1024
ENDPOINT = "/v1/chat/completions"


def plain_read(path: Path) -> int:
    size = 0
    with path.open("rb") as stream:
        while chunk := stream.read(CHUNK):
            size += len(chunk)
    return size


def line_read(path: Path) -> int:
    lines = 0
    with path.open("rb") as stream:
        for _ in stream:
            lines += 1
    return lines


def best(step: Callable[[], T], repeat: int) -> tuple[Timing, int, T]:
    """The fastest of ``repeat`` runs, and the highest RSS above the start seen in any."""
    fastest: Timing | None = None
    rise = 0
    result: T | None = None
    for _ in range(repeat):
        before = psutil.Process().memory_info().rss
        with PeakRss() as peak:
            timing, result = timed(step)
        rise = max(rise, peak.peak - before)
        fastest = timing if fastest is None or timing.wall < fastest.wall else fastest
    assert fastest is not None and result is not None
    return fastest, rise, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=1_000_000)
    parser.add_argument("--shard-requests", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    limits = ShardLimits(max_requests=args.shard_requests)
    with tempfile.TemporaryDirectory(prefix="bench-check-") as folder:
        path = Path(folder) / "in.jsonl"
        write_input(path, args.requests)
        size = path.stat().st_size
        print(f"input: {args.requests:,} requests, {size / MB:.1f} MB")
        plain_read(path)  # warm the page cache for every step alike

        read, read_rss, _ = best(lambda: plain_read(path), args.repeat)
        lines, lines_rss, _ = best(lambda: line_read(path), args.repeat)
        check, check_rss, checked = best(
            lambda: check_input(path, endpoint=ENDPOINT, limits=limits), args.repeat
        )
        tracemalloc.start()
        check_input(path, endpoint=ENDPOINT, limits=limits)
        _, python_peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()

        print(f"read  (1 MiB chunks): {read.against(read)}   peak RSS +{read_rss / MB:.1f} MB")
        print(f"lines (line by line): {lines.against(read)}   peak RSS +{lines_rss / MB:.1f} MB")
        print(f"check (check_input):  {check.against(read)}   peak RSS +{check_rss / MB:.1f} MB")
        print(
            f"check: {checked.requests:,} requests in {checked.shards} shards; "
            f"{check.wall / checked.requests * 1e6:.2f} us a request; "
            f"Python allocations peak {python_peak / MB:.1f} MB (tracemalloc); "
            f"digests on disk {32 * checked.requests / MB:.1f} MB"
        )


if __name__ == "__main__":
    main()
