"""Benchmark: split a 1,000,000-request input into shards and merge their results, vs a copy.

Generates an input of small chat requests, then, each timed:
- copy: the input copied once (``shutil.copyfile``), the baseline of the same run;
- split: ``shards.split.split_jsonl`` into shards of ``--shard-requests``, with
  the token estimate the admission step needs (``--no-tokens`` to skip it);
- merge (input order) and merge (gateway order): ``shards.merge.merge_shards``
  over per-shard results and errors files written beforehand (untimed) the way
  collect_results leaves them: shuffled, 1 % of requests in the errors file.
Nothing is fsynced, in the copy or in the split and merge. Peak RSS of this
process is sampled with psutil every 10 ms during the timed steps, against the
RSS before them.

    python -m bench.shard_merge [--requests 1000000] [--shard-requests 50000]
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import psutil

from shards.files import ShardFiles
from shards.limits import ShardLimits
from shards.merge import merge_shards
from shards.split import split_jsonl

T = TypeVar("T")
MB = 1_000_000


class PeakRss:
    def __init__(self) -> None:
        self.process = psutil.Process()
        self.peak = self.process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


@dataclass(frozen=True)
class Timing:
    wall: float
    cpu: float

    def __add__(self, other: Timing) -> Timing:
        return Timing(self.wall + other.wall, self.cpu + other.cpu)

    def against(self, base: Timing) -> str:
        return (
            f"{self.wall:7.2f} s wall {self.wall / base.wall:6.1f}x   "
            f"{self.cpu:7.2f} s cpu {self.cpu / base.cpu:6.1f}x"
        )


def timed(step: Callable[[], T]) -> tuple[Timing, T]:
    """Wall and CPU seconds: on a shared machine the CPU ratio is the steadier one."""
    started, cpu = time.perf_counter(), time.process_time()
    result = step()
    return Timing(time.perf_counter() - started, time.process_time() - cpu), result


def write_input(path: Path, requests: int) -> None:
    with path.open("w") as out:
        for i in range(requests):
            out.write(
                f'{{"custom_id": "req-{i:07d}", "method": "POST", "url": "/v1/chat/completions", '
                f'"body": {{"model": "gpt-4o-mini", "max_tokens": 20, "messages": '
                f'[{{"role": "user", "content": "Say something short about number {i}."}}]}}}}\n'
            )


def write_shard_outputs(folder: Path, name: str, seed: int) -> ShardFiles:
    shard_input = folder / name
    ids = [json.loads(line)["custom_id"] for line in shard_input.read_text().splitlines()]
    random.Random(seed).shuffle(ids)
    stem = folder / name.removesuffix(".jsonl")
    results, errors = Path(f"{stem}.results.jsonl"), Path(f"{stem}.errors.jsonl")
    with results.open("w") as ok, errors.open("w") as failed:
        for n, custom_id in enumerate(ids):
            status, out = (429, failed) if n % 100 == 0 else (200, ok)
            out.write(
                f'{{"id": "batch_req_{custom_id}", "custom_id": "{custom_id}", "response": '
                f'{{"status_code": {status}, "request_id": "req_{n}", "body": {{"usage": '
                f'{{"prompt_tokens": 14, "completion_tokens": 9, "total_tokens": 23}}}}}}, '
                f'"error": null}}\n'
            )
    return ShardFiles(input_path=shard_input, results_path=results, errors_path=errors)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1_000_000)
    parser.add_argument("--shard-requests", type=int, default=50_000)
    parser.add_argument("--no-tokens", action="store_true", help="split without token estimates")
    opts = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-shard-merge-") as tmp:
        root = Path(tmp)
        source = root / "input.jsonl"
        write_input(source, opts.requests)
        size = source.stat().st_size
        limits = ShardLimits(max_requests=opts.shard_requests)

        copy_s, _ = timed(lambda: shutil.copyfile(source, root / "copy.jsonl"))
        rss = PeakRss()
        before = rss.peak
        with rss:
            split_s, plan = timed(
                lambda: split_jsonl(
                    source, root / "shards", limits, count_tokens=not opts.no_tokens
                )
            )
            split_peak = rss.peak
        shards = [
            write_shard_outputs(root / "shards", spec.name, spec.index) for spec in plan.shards
        ]
        results_bytes = sum(
            s.results_path.stat().st_size + s.errors_path.stat().st_size for s in shards
        )
        rss = PeakRss()
        with rss:
            merge_s, tally = timed(
                lambda: merge_shards(shards, root / "out.jsonl", root / "err.jsonl")
            )
            gateway_s, _ = timed(
                lambda: merge_shards(
                    shards, root / "out-g.jsonl", root / "err-g.jsonl", order="gateway"
                )
            )
        assert tally.requests == opts.requests, tally

        print(f"input: {opts.requests:,} requests, {size / MB:.0f} MB; {len(plan.shards)} shards")
        print(f"results + errors: {results_bytes / MB:.0f} MB")
        print(
            f"copy of the input:        {copy_s.wall:7.2f} s wall          "
            f"{copy_s.cpu:7.2f} s cpu   ({size / MB / copy_s.wall:,.0f} MB/s)"
        )
        tokens = "without" if opts.no_tokens else "with"
        print(f"split ({tokens} tokens):  {split_s.against(copy_s)}")
        print(f"merge, input order:       {merge_s.against(copy_s)}")
        print(f"merge, gateway order:     {gateway_s.against(copy_s)}")
        print(f"split + merge (input):    {(split_s + merge_s).against(copy_s)}")
        print(f"split + merge (gateway):  {(split_s + gateway_s).against(copy_s)}")
        print(
            f"peak RSS: {max(split_peak, rss.peak) / MB:.0f} MB (before: {before / MB:.0f} MB; "
            f"split {split_peak / MB:.0f}, merge {rss.peak / MB:.0f})"
        )


if __name__ == "__main__":
    main()
