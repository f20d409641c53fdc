"""Benchmark: a sharded job's split and merge with shard files in S3 (moto) vs on the data dir.

The activities themselves (ShardingActivities.split_input and merge_shards)
run in this process, once with every location on a local data directory (the
kernel-copy fast path) and once with every location in moto's S3 server
(staged through a temporary folder, activities/shard_folders.py). Between the
split and the merge each shard's results and errors are written the way
collect_results leaves them (untimed; 1 % errors). Baselines from the same
run: the input copied once on disk (shutil.copyfile) and through the store
(obstore get, then a multipart put of the streamed chunks, as the storage
layer publishes). Peak RSS of this process is sampled every 10 ms during each
step, against the RSS before it.

    python -m bench.shards_in_store [--requests 200000] [--shard-requests 50000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from temporalio.testing import ActivityEnvironment

from activities.sharding import ShardingActivities
from bench.shard_merge import MB, PeakRss, write_input, write_shard_outputs
from contracts.sharding import (
    MergeShardsRequest,
    RoundState,
    SplitInputRequest,
    round_dir,
    shard_errors,
    shard_results,
)
from devstack.storage_servers import MotoServer
from storage import LocalStorage, ObjectStorage, Stores

T = TypeVar("T")
BUCKET = "bench-shards"


async def measured(step: Callable[[], Awaitable[T]]) -> tuple[float, float, T]:
    """Wall seconds and peak RSS growth (MB) of one step."""
    with PeakRss() as rss:
        before = rss.peak
        started = time.perf_counter()
        result = await step()
        wall = time.perf_counter() - started
    return wall, (rss.peak - before) / MB, result


async def store_copy(source: str, target: str) -> None:
    store = ObjectStorage()
    with tempfile.TemporaryDirectory() as scratch:
        local = Path(scratch) / "copy"
        with local.open("wb") as out:
            async for chunk in store.read_chunks(source):
                out.write(chunk)
        await store.put_file(target, local)


async def one_path(
    name: str, stores: Stores, work: str, source: str, per_shard: int, outputs: Path
) -> dict[str, tuple[float, float]]:
    sharding = ShardingActivities(stores, "openai")
    env = ActivityEnvironment()
    folder = round_dir(work, 0)
    split_wall, split_rss, summary = await measured(
        lambda: env.run(
            sharding.split_input,
            SplitInputRequest(input_path=source, round_dir=folder, max_batch_requests=per_shard),
        )
    )
    # What each child leaves: results and errors in the shard's input order (untimed).
    local_round = outputs / name
    local_round.mkdir()
    for index in range(summary.shards):
        shard_name = f"shard-{index:05d}.jsonl"
        async with stores.reading(f"{folder}/{shard_name}") as shard:
            shutil.copyfile(shard, local_round / shard_name)
        files = write_shard_outputs(local_round, shard_name)
        for written, location in (
            (files.results_path, shard_results(folder, index)),
            (files.errors_path, shard_errors(folder, index)),
        ):
            async with stores.atomic_write(location) as target:
                shutil.copyfile(written, target)
    state = RoundState(shards=summary.shards, requests=summary.requests, next_shard=summary.shards)
    results = f"{work.rsplit('/', 1)[0]}/{name}.results.jsonl"
    merge_wall, merge_rss, merged = await measured(
        lambda: env.run(
            sharding.merge_shards,
            MergeShardsRequest(
                work_dir=work,
                rounds=[state],
                output_path=results,
                errors_path=results.replace(".results.", ".errors."),
                not_run_code="batch_cancelled",
            ),
        )
    )
    assert merged.requests == summary.requests
    return {"split": (split_wall, split_rss), "merge": (merge_wall, merge_rss)}


async def run(opts: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as folder, MotoServer(Path(folder) / "moto") as moto:
        root = Path(folder)
        moto.create_bucket(BUCKET)
        os.environ.update(moto.env())
        data = root / "data"
        data.mkdir()
        write_input(data / "in.jsonl", opts.requests)
        size = (data / "in.jsonl").stat().st_size
        await ObjectStorage().put_file(f"s3://{BUCKET}/in.jsonl", data / "in.jsonl")
        stores = Stores(LocalStorage(data))

        disk_copy, _, _ = await measured(
            lambda: asyncio.to_thread(shutil.copyfile, data / "in.jsonl", data / "copy.jsonl")
        )
        (data / "copy.jsonl").unlink()
        s3_copy, s3_copy_rss, _ = await measured(
            lambda: store_copy(f"s3://{BUCKET}/in.jsonl", f"s3://{BUCKET}/copy.jsonl")
        )
        outputs = root / "outputs"
        outputs.mkdir()
        local = await one_path(
            "local", stores, "out/in.shards", "in.jsonl", opts.shard_requests, outputs
        )
        s3 = await one_path(
            "s3",
            stores,
            f"s3://{BUCKET}/out/.shards/bench",
            f"s3://{BUCKET}/in.jsonl",
            opts.shard_requests,
            outputs,
        )
        print(
            f"{opts.requests} requests, {size / MB:.0f} MB, shards of {opts.shard_requests}; "
            f"copy of the input: disk {disk_copy:.2f} s, through S3 {s3_copy:.2f} s "
            f"(+{s3_copy_rss:.0f} MB)"
        )
        for step in ("split", "merge"):
            (lw, lr), (sw, sr) = local[step], s3[step]
            print(
                f"{step:5}  data dir {lw:6.2f} s +{lr:4.0f} MB   S3 {sw:6.2f} s +{sr:4.0f} MB   "
                f"S3/data dir {sw / lw:4.1f}x   S3/S3 copy {sw / s3_copy:4.1f}x"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--shard-requests", type=int, default=50_000)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
