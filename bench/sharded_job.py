"""Benchmark: one large job through the emulator as a sharded job, on real processes.

Starts a Temporal dev server, the gateway emulator and a worker process
(worker.py) on 127.0.0.1, writes an input of small chat requests and runs it
as one ShardedBatchJobWorkflow. Prints the job's wall time, the split and the
merge (activity windows from the parent's history) against plain copies of
the same bytes measured in the same run (the input before the job; the merged
results and errors after it, fsynced as the merge publishes them), the merge
activity's own split of its time (from the worker's log), the worker's peak
RSS against its idle RSS, and the parent's history length per run (it
continues as new every --children-per-run). ``--keep DIR`` keeps the data
folder (input, shards, results) for a look afterwards.

    python -m bench.sharded_job [--requests 100000] [--shard-requests 10000]
                                [--concurrency 4] [--children-per-run 500]

The issue's figure is --requests 1000000 --shard-requests 50000.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

from temporalio.client import Client, WorkflowHistory

from bench.emulator_common import MB
from bench.emulator_files import timed_copy
from bench.worker_memory import RssSampler, activity_windows, wait_for_log
from contracts.job import BatchJobInput
from contracts.names import SHARDED_JOB_WORKFLOW_NAME
from contracts.sharding import ShardedJobInput, ShardedJobResult, ShardingOptions
from devstack.emulator import EmulatorProcess
from devstack.temporal import start_dev_server
from devstack.worker import WorkerProcess


def make_input(path: Path, requests: int) -> int:
    with path.open("w") as out:
        for n in range(requests):
            body = {
                "model": "gpt-4o-mini",
                "max_tokens": 16,
                "messages": [{"role": "user", "content": f"Describe item {n} in one line"}],
            }
            line = {"custom_id": f"req-{n}", "method": "POST", "url": "/v1/chat/completions"}
            out.write(json.dumps({**line, "body": body}) + "\n")
    return path.stat().st_size


async def histories(client: Client, workflow_id: str, first_run: str) -> list[WorkflowHistory]:
    """Every run of the parent, following continue-as-new from its first run."""
    found, run_id = [], first_run
    while run_id:
        history = await client.get_workflow_handle(workflow_id, run_id=run_id).fetch_history()
        found.append(history)
        last = history.events[-1]
        run_id = (
            last.workflow_execution_continued_as_new_event_attributes.new_execution_run_id
            if last.HasField("workflow_execution_continued_as_new_event_attributes")
            else ""
        )
    return found


async def run(opts: argparse.Namespace) -> bool:
    with tempfile.TemporaryDirectory(prefix="bench-sharded-") as tmp:
        root = Path(tmp)
        data = root / "data"
        data.mkdir()
        print(f"writing {opts.requests:,} requests ...", flush=True)
        size = make_input(data / "in.jsonl", opts.requests)
        copy_s = timed_copy(data / "in.jsonl", root / "copy.jsonl")
        (root / "copy.jsonl").unlink()
        env = await start_dev_server()
        try:
            knobs = {
                "validating_seconds": 0.2,
                "finalizing_seconds": 0.2,
                "line_latency_seconds": 0,
                "batch_concurrency": 1000,
            }
            with EmulatorProcess(root / "emulator", knobs=knobs) as emu:
                queue = f"bench-sharded-{uuid.uuid4().hex[:8]}"
                worker = WorkerProcess(
                    root / "worker.log",
                    {
                        "TEMPORAL_ADDRESS": env.client.service_client.config.target_host,
                        "TEMPORAL_NAMESPACE": "default",
                        "TEMPORAL_TASK_QUEUE": queue,
                        "GATEWAY_URL": emu.base_url,
                        "GATEWAY_DIALECT": "openai",
                        "BATCH_DATA_DIR": str(data),
                    },
                )
                with worker:
                    assert worker.proc is not None
                    await wait_for_log(worker, "worker on task queue", 30)
                    sampler = RssSampler(worker.proc.pid, interval=0.1).start()
                    await asyncio.sleep(2)
                    idle_end = time.time()
                    request = ShardedJobInput(
                        job=BatchJobInput(
                            input_path="in.jsonl", poll_interval=timedelta(seconds=1)
                        ),
                        sharding=ShardingOptions(
                            max_batch_requests=opts.shard_requests,
                            max_concurrent_batches=opts.concurrency,
                            children_per_run=opts.children_per_run,
                        ),
                    )
                    print("running the job ...", flush=True)
                    started = time.perf_counter()
                    try:
                        handle = await env.client.start_workflow(
                            SHARDED_JOB_WORKFLOW_NAME,
                            request,
                            id=f"bench-sharded-{uuid.uuid4().hex[:8]}",
                            task_queue=queue,
                            result_type=ShardedJobResult,
                        )
                        result = await asyncio.wait_for(handle.result(), opts.timeout)
                    finally:
                        sampler.stop()
                    job_s = time.perf_counter() - started
                    runs = await histories(env.client, handle.id, handle.result_run_id or "")
                    merge_log = [
                        line.strip()
                        for line in (root / "worker.log").read_text(errors="replace").splitlines()
                        if "merged " in line and " usage " in line
                    ]
        finally:
            await env.shutdown()
        # The merge's own baseline: its output's bytes copied once (fsynced, as it publishes).
        merged_files = [data / result.output_path, data / result.errors_path]
        merged_size = sum(p.stat().st_size for p in merged_files)
        merged_copy_s = sum(timed_copy(p, root / f"copy-{p.name}") for p in merged_files)
        if opts.keep:
            shutil.copytree(data, opts.keep, dirs_exist_ok=True)

    idle = statistics.median(s.rss for s in sampler.samples if s.at <= idle_end)
    peak = max(s.rss for s in sampler.samples)
    split = activity_windows(runs[0]).get("split_input")
    merge = activity_windows(runs[-1]).get("merge_shards")
    print()
    print(
        f"job: {result.status.value}, {result.succeeded:,}/{result.requests:,} succeeded in "
        f"{result.shards} shards, {job_s:.1f} s wall; input {size / MB:.1f} MB"
    )
    print(f"baseline: plain copy of the input  {copy_s:7.2f} s  1.0x")
    for label, window in (("split_input", split), ("merge_shards", merge)):
        if window is not None:
            print(f"{label:<34} {window.seconds:7.2f} s  {window.seconds / copy_s:.1f}x")
    if split is not None and merge is not None:
        both = split.seconds + merge.seconds
        print(f"{'split + merge':<34} {both:7.2f} s  {both / copy_s:.1f}x")
        print(
            f"baseline: copy of the merged files {merged_copy_s:7.2f} s  1.0x "
            f"({merged_size / MB:.1f} MB results + errors)"
        )
        print(
            f"{'merge_shards against it':<34} {merge.seconds:7.2f} s  "
            f"{merge.seconds / merged_copy_s:.1f}x"
        )
        together = copy_s + merged_copy_s
        print(
            f"{'split + merge against both copies':<34} {both:7.2f} s  {both / together:.1f}x "
            f"(copies {together:.2f} s)"
        )
    for line in merge_log:  # the merge activity's own split of its time
        print("  " + line[line.find("merged ") :])
    print(
        f"worker RSS: idle {idle / MB:.0f} MB, peak {peak / MB:.0f} MB (+{(peak - idle) / MB:.0f})"
    )
    lengths = [len(h.events) for h in runs]
    print(f"parent history: {len(runs)} run(s), events per run {lengths}")
    return result.succeeded == result.requests


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--shard-requests", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--children-per-run", type=int, default=500)
    parser.add_argument("--timeout", type=float, default=1800.0)
    parser.add_argument("--keep", type=Path, help="copy the data folder (shards, results) here")
    return 0 if asyncio.run(run(parser.parse_args())) else 1


if __name__ == "__main__":
    sys.exit(main())
