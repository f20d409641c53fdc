"""Benchmark: split a 1,000,000-request input into shards and merge their results, vs a copy.

Generates an input of small chat requests, then, each timed ``--repeat`` times
(the best of each is reported: other work on the machine only ever adds):
- copy: the input copied once (``shutil.copyfile``), the baseline of the same run;
  and the shards' results and errors copied once (the bytes the merge writes):
  split and merge are also shown against both copies together;
- split: ``shards.split.split_jsonl`` into shards of ``--shard-requests``, without
  the token estimate (only a job with an enqueued-token limit asks for it;
  ``--tokens`` adds a row with it);
- merge: ``shards.merge.merge_rounds`` over per-shard results and errors
  written beforehand (untimed) the way collect_results leaves them: in each
  shard's input order, 1 % of requests in the errors file (429s). One round,
  then two: the 429s resubmitted (``select_resubmissions``, untimed) and all
  recovered, so every shard is spliced. Input and gateway order.
Nothing is fsynced, in the copy or in the split and merge. Peak RSS of this
process is sampled with psutil every 10 ms during the timed steps, against the
RSS before them.

    python -m bench.shard_merge [--requests 1000000] [--shard-requests 50000]
                                [--repeat 3] [--tokens]
"""

from __future__ import annotations

import argparse
import json
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
from shards.merge import MergeTally, Order, merge_rounds
from shards.resubmit import select_resubmissions
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


def write_shard_outputs(folder: Path, name: str, fail_every: int = 100) -> ShardFiles:
    """Results and errors as collect_results writes them: each in the shard's input order."""
    shard_input = folder / name
    ids = [json.loads(line)["custom_id"] for line in shard_input.read_text().splitlines()]
    stem = folder / name.removesuffix(".jsonl")
    results, errors = Path(f"{stem}.results.jsonl"), Path(f"{stem}.errors.jsonl")
    with results.open("w") as ok, errors.open("w") as failed:
        for n, custom_id in enumerate(ids):
            status, out = (429, failed) if fail_every and n % fail_every == 0 else (200, ok)
            out.write(
                f'{{"id": "batch_req_{custom_id}", "custom_id": "{custom_id}", "response": '
                f'{{"status_code": {status}, "request_id": "req_{n}", "body": {{"usage": '
                f'{{"prompt_tokens": 14, "completion_tokens": 9, "total_tokens": 23}}}}}}, '
                f'"error": null}}\n'
            )
    return ShardFiles(shard_input, results, errors, requests=len(ids))


def best(step: Callable[[], T], repeat: int, fresh: Callable[[], object]) -> tuple[Timing, T]:
    """The fastest of ``repeat`` runs, wall and CPU each.

    ``fresh`` (untimed) removes what the step writes first: replacing a file
    that exists makes ext4 write it back at once (auto_da_alloc), which a job
    writing new files never pays.
    """
    runs = []
    for _ in range(repeat):
        fresh()
        runs.append(timed(step))
    wall = min(t.wall for t, _ in runs)
    cpu = min(t.cpu for t, _ in runs)
    return Timing(wall, cpu), runs[-1][1]


def removed(*paths: Path) -> Callable[[], None]:
    def remove() -> None:
        for path in paths:
            if path.is_dir():
                shutil.rmtree(path)
            path.unlink(missing_ok=True)

    return remove


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1_000_000)
    parser.add_argument("--shard-requests", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--tokens", action="store_true", help="also split with token estimates")
    opts = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-shard-merge-") as tmp:
        root = Path(tmp)
        source = root / "input.jsonl"
        write_input(source, opts.requests)
        size = source.stat().st_size
        limits = ShardLimits(max_requests=opts.shard_requests)
        r0, r1 = root / "round-0", root / "round-1"

        copy = root / "copy.jsonl"
        copy_s, _ = best(lambda: shutil.copyfile(source, copy), opts.repeat, removed(copy))
        rss = PeakRss()
        before = rss.peak
        with rss:
            split_s, plan = best(
                lambda: split_jsonl(source, r0, limits, count_tokens=False),
                opts.repeat,
                removed(r0),
            )
            tokens_s = (
                best(lambda: split_jsonl(source, root / "t", limits), 1, removed(root / "t"))[0]
                if opts.tokens
                else None
            )
            split_peak = rss.peak
        round0 = [write_shard_outputs(r0, spec.name) for spec in plan.shards]
        results_bytes = sum(
            s.results_path.stat().st_size + s.errors_path.stat().st_size for s in round0
        )
        r1.mkdir()
        resubmitted = select_resubmissions(round0, r1 / "resubmit.jsonl").requests
        plan1 = split_jsonl(r1 / "resubmit.jsonl", r1, limits, count_tokens=False)
        round1 = [write_shard_outputs(r1, spec.name, fail_every=0) for spec in plan1.shards]

        def merge(rounds: list[list[ShardFiles]], order: Order) -> MergeTally:
            return merge_rounds(rounds, root / "out.jsonl", root / "err.jsonl", order=order)

        outputs = [p for shard in round0 for p in (shard.results_path, shard.errors_path)]
        copies = root / "copies"

        def copy_outputs() -> None:
            copies.mkdir()
            for n, path in enumerate(outputs):
                shutil.copyfile(path, copies / f"{n}.jsonl")

        copy_out_s, _ = best(copy_outputs, opts.repeat, removed(copies))
        both_copies = copy_s + copy_out_s
        fresh = removed(root / "out.jsonl", root / "err.jsonl")
        rss = PeakRss()
        with rss:
            merge_s, tally = best(lambda: merge([round0], "input"), opts.repeat, fresh)
            gateway_s, _ = best(lambda: merge([round0], "gateway"), opts.repeat, fresh)
            splice_s, spliced = best(lambda: merge([round0, round1], "input"), opts.repeat, fresh)
            splice_gateway_s, _ = best(
                lambda: merge([round0, round1], "gateway"), opts.repeat, fresh
            )
        assert tally.requests == opts.requests, tally
        assert (spliced.recovered, spliced.failed) == (resubmitted, 0), spliced

        print(f"input: {opts.requests:,} requests, {size / MB:.0f} MB; {len(plan.shards)} shards")
        print(f"results + errors: {results_bytes / MB:.0f} MB; best of {opts.repeat} runs each")
        print(
            f"copy of the input:             {copy_s.wall:7.2f} s wall          "
            f"{copy_s.cpu:7.2f} s cpu   ({size / MB / copy_s.wall:,.0f} MB/s)"
        )
        print(f"split:                         {split_s.against(copy_s)}")
        if tokens_s is not None:
            print(f"split with token estimates:    {tokens_s.against(copy_s)}")
        print(f"merge, one round:              {merge_s.against(copy_s)}")
        print(f"merge, one round, gateway:     {gateway_s.against(copy_s)}")
        print(f"merge, {resubmitted:,} recovered:     {splice_s.against(copy_s)}")
        print(f"  the same, gateway order:     {splice_gateway_s.against(copy_s)}")
        print(f"split + merge (one round):     {(split_s + merge_s).against(copy_s)}")
        print(f"split + merge (recovered):     {(split_s + splice_s).against(copy_s)}")
        print(
            f"copy of the shards' outputs:   {copy_out_s.wall:7.2f} s wall          "
            f"{copy_out_s.cpu:7.2f} s cpu   (the bytes the merge writes)"
        )
        print("against both copies (every byte split and merge write, copied once):")
        print(f"  merge, one round:            {merge_s.against(copy_out_s)}")
        print(f"  split + merge (one round):   {(split_s + merge_s).against(both_copies)}")
        print(f"  split + merge (recovered):   {(split_s + splice_s).against(both_copies)}")
        print(
            f"peak RSS: {max(split_peak, rss.peak) / MB:.0f} MB (before: {before / MB:.0f} MB; "
            f"split {split_peak / MB:.0f}, merge {rss.peak / MB:.0f})"
        )


if __name__ == "__main__":
    main()
