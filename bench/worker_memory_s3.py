"""Benchmark: the worker's peak memory and throughput with a 200 MB job in an S3 server.

Like bench.worker_memory, but the job's files live in moto's S3 server
(devstack/storage_servers.py) and the worker has no data folder: it reads the
~200 MB input from s3:// (validate, upload, collect each stream it) and
publishes the ~200 MB results file there. The worker's RSS is sampled every
20 ms; the history's activity events give each step's window.

Baselines, measured in the same run: the worker's idle RSS before the job
(memory), and the same library (obstore) copying the same input object store
to store, once streamed through this process (get, then a multipart put of the
streamed chunks) and once as the server-side copy (throughput).

    python -m bench.worker_memory_s3 [--mb 200] [--lines 50000]

Exits 1 if the worker's peak RSS grows by more than --max-growth-mb (default
64) over idle in any step.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

import obstore
from obstore.store import S3Store

from bench.emulator_common import MB
from bench.worker_memory import (
    SAMPLE_SECONDS,
    RssSampler,
    Window,
    activity_windows,
    make_input,
    mb,
    wait_for_log,
)
from contracts.job import BatchJobInput, BatchJobResult, InputLimits, JobStatus
from devstack.emulator import EmulatorProcess
from devstack.storage_servers import MotoServer
from devstack.temporal import start_dev_server
from devstack.worker import WorkerProcess
from storage.objects import PART_BYTES, PARTS_IN_FLIGHT

BUCKET = "bench"
# Jobs validate and upload in one step (validate-and-upload-v1).
STEPS = ("submit_batch", "collect_results")


async def streamed_copy(store: S3Store, source: str, target: str) -> float:
    """Seconds to get source and put its chunks at target, through this process."""
    started = time.perf_counter()
    result = await obstore.get_async(store, source)
    await obstore.put_async(
        store,
        target,
        result.stream(min_chunk_size=PART_BYTES),
        chunk_size=PART_BYTES,
        max_concurrency=PARTS_IN_FLIGHT,
    )
    return time.perf_counter() - started


async def server_copy(store: S3Store, source: str, target: str) -> float:
    started = time.perf_counter()
    await obstore.copy_async(store, source, target)
    return time.perf_counter() - started


async def run(opts: argparse.Namespace) -> bool:
    line_bytes = opts.mb * MB // opts.lines
    with tempfile.TemporaryDirectory(prefix="bench-worker-memory-s3-") as tmp:
        root = Path(tmp)
        src = root / "input.jsonl"
        print(f"writing {opts.lines} lines of {line_bytes} bytes ...", flush=True)
        size = make_input(src, opts.lines, line_bytes)
        with MotoServer(root / "moto") as moto:
            moto.create_bucket(BUCKET)
            os.environ.update(moto.env())
            store = S3Store(BUCKET, client_options={"allow_http": True, "timeout": "1h"})
            await obstore.put_async(
                store, "input.jsonl", src, chunk_size=PART_BYTES, max_concurrency=PARTS_IN_FLIGHT
            )
            src.unlink()
            print("baseline: copying the input store to store ...", flush=True)
            streamed_s = await streamed_copy(store, "input.jsonl", "copy-streamed.jsonl")
            server_s = await server_copy(store, "input.jsonl", "copy-server.jsonl")
            for key in ("copy-streamed.jsonl", "copy-server.jsonl"):
                await obstore.delete_async(store, key)

            env = await start_dev_server()
            try:
                knobs = {
                    "validating_seconds": 0.2,
                    "finalizing_seconds": 0.2,
                    "line_latency_seconds": 0,
                    "batch_concurrency": 1000,
                    "max_file_bytes": max(2 * size, 200 * 1024 * 1024),
                    "max_requests_per_file": max(opts.lines, 50_000),
                }
                with EmulatorProcess(root / "emulator", knobs=knobs) as emu:
                    task_queue = f"bench-memory-s3-{uuid.uuid4().hex[:8]}"
                    empty = root / "worker-data"
                    empty.mkdir()
                    worker = WorkerProcess(
                        root / "worker.log",
                        {
                            "TEMPORAL_ADDRESS": env.client.service_client.config.target_host,
                            "TEMPORAL_NAMESPACE": "default",
                            "TEMPORAL_TASK_QUEUE": task_queue,
                            "GATEWAY_URL": emu.base_url,
                            "BATCH_DATA_DIR": str(empty),
                            **moto.env(),
                            "BATCH_ALLOWED_LOCATIONS": "*",
                        },
                    )
                    with worker:
                        assert worker.proc is not None
                        await wait_for_log(worker, "worker on task queue", 30)
                        sampler = RssSampler(worker.proc.pid).start()
                        await asyncio.sleep(opts.idle_seconds)
                        idle_end = time.time()
                        print("running the job ...", flush=True)
                        started = time.perf_counter()
                        try:
                            job = BatchJobInput(
                                input_path=f"s3://{BUCKET}/input.jsonl",
                                endpoint="/v1/embeddings",
                                poll_interval=timedelta(seconds=1),
                                limits=InputLimits(
                                    max_requests=max(opts.lines, 50_000),
                                    max_bytes=max(size, 200 * 1024 * 1024),
                                ),
                            )
                            handle = await env.client.start_workflow(
                                "BatchJobWorkflow",
                                job,
                                id=f"bench-memory-s3-{uuid.uuid4().hex[:8]}",
                                task_queue=task_queue,
                                result_type=BatchJobResult,
                                execution_timeout=timedelta(seconds=opts.timeout),
                            )
                            result = await asyncio.wait_for(handle.result(), opts.timeout + 30)
                            history = await handle.fetch_history()
                        finally:
                            sampler.stop()
                        job_s = time.perf_counter() - started
            finally:
                await env.shutdown()
            meta = await obstore.head_async(store, "input.output.jsonl")
            output_size = int(meta["size"])
            leftovers = await asyncio.to_thread(lambda: sorted(empty.iterdir()))

    idle_samples = [x.rss for x in sampler.samples if x.at <= idle_end]
    idle = statistics.median(idle_samples)
    windows = activity_windows(history)
    print()
    print(
        f"job: {result.status.value}, {result.requests.succeeded}/{result.requests.total} "
        f"succeeded, {job_s:.1f} s; worker sampled every {SAMPLE_SECONDS * 1000:.0f} ms "
        f"({len(sampler.samples)} samples)"
    )
    print(f"input   s3://{BUCKET}/input.jsonl        {mb(size)} ({opts.lines} lines)")
    print(f"results s3://{BUCKET}/input.output.jsonl {mb(output_size)}")
    print(f"baseline: idle worker RSS {mb(idle)} (median of {len(idle_samples)} samples)")
    print()
    # What each step moves through the worker: reads of the input from S3, the
    # emulator upload, the download and the results published to S3.
    moved = {
        "submit_batch": 3 * size,
        "collect_results": size + 2 * output_size,
    }
    print(
        f"{'step':<18} {'seconds':>8} {'peak RSS':>11} {'over idle':>11} "
        f"{'MB moved':>9} {'MB/s':>7} {'/ streamed copy':>16}"
    )
    streamed_rate = 2 * size / MB / streamed_s  # read and written, like the steps' bytes
    growth: dict[str, float] = {}
    for name in STEPS:
        window: Window | None = windows.get(name)
        if window is None:
            print(f"{name:<18} (not found)")
            continue
        peak = max((x.rss for x in sampler.between(window)), default=idle)
        growth[name] = peak - idle
        rate = moved[name] / MB / window.seconds
        print(
            f"{name:<18} {window.seconds:>8.2f} {mb(peak):>11} {mb(peak - idle):>11} "
            f"{moved[name] / MB:>9.0f} {rate:>7.1f} {rate / streamed_rate:>15.2f}x"
        )
    overall = max(x.rss for x in sampler.samples)
    print(f"{'whole job':<18} {job_s:>8.2f} {mb(overall):>11} {mb(overall - idle):>11}")
    print()
    print(
        f"baseline: obstore streamed copy, get + put through one process: "
        f"{size / MB / streamed_s:6.1f} MB/s of object ({streamed_rate:6.1f} MB/s moved, "
        f"{streamed_s:.2f} s)"
    )
    print(
        f"          obstore server-side copy (bytes stay in the server):    "
        f"{size / MB / server_s:6.1f} MB/s of object ({server_s:.2f} s)"
    )

    limit = opts.max_growth_mb * MB
    checks = [
        (
            f"{name}: peak RSS over idle {growth.get(name, -MB) / MB:.1f} MB "
            f"< {opts.max_growth_mb} MB",
            0 <= growth.get(name, -1.0) < limit,
        )
        for name in STEPS
    ]
    checks += [
        (
            f"every request succeeded ({result.requests.succeeded}/{opts.lines})",
            result.status is JobStatus.SUCCEEDED and result.requests.succeeded == opts.lines,
        ),
        (f"nothing written to the worker's data folder ({len(leftovers)} files)", not leftovers),
    ]
    print()
    for text, ok in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {text}")
    return all(ok for _, ok in checks)


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--mb", type=int, default=200, help="input size in MB (10^6 bytes)")
    args.add_argument("--lines", type=int, default=50_000, help="requests in the input")
    args.add_argument("--idle-seconds", type=float, default=3.0, help="idle RSS sampling time")
    args.add_argument("--timeout", type=float, default=900.0, help="give up after (seconds)")
    args.add_argument("--max-growth-mb", type=int, default=64, help="FAIL above this growth")
    opts = args.parse_args()
    sys.exit(0 if asyncio.run(run(opts)) else 1)


if __name__ == "__main__":
    main()
