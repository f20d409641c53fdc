"""Benchmark: how many waiting batch jobs one small worker holds.

A job whose batch is running at the gateway holds no activity slot and no
coroutine on the worker: between polls it exists only as Temporal timers. This
starts one worker, an emulator whose batches run for minutes, and N jobs, waits
until every batch is in progress, and reports the worker's memory, CPU and
busy activity slots against the same worker idle, measured in the same run.

    python -m bench.waiting_jobs [--jobs 1000] [--poll-seconds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
import uuid
from datetime import timedelta
from pathlib import Path

import psutil
from temporalio.client import Client

from bench.emulator_common import MB
from contracts.job import BatchJobInput, JobProgress
from contracts.names import QUERY_PROGRESS, WORKFLOW_NAME
from devstack.emulator import EmulatorProcess
from devstack.temporal import start_dev_server
from devstack.worker import WorkerProcess


def write_input(path: Path, requests: int) -> None:
    with path.open("w") as out:
        for i in range(requests):
            body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"q{i}"}]}
            line = {"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions"}
            out.write(json.dumps({**line, "body": body}) + "\n")


def sample(proc: psutil.Process, seconds: float) -> tuple[float, float]:
    """Mean RSS (MB) and CPU (% of one core) over a window."""
    proc.cpu_percent(None)
    rss: list[int] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        rss.append(proc.memory_info().rss)
        time.sleep(0.5)
    return sum(rss) / len(rss) / MB, proc.cpu_percent(None)


async def count_waiting(client: Client, ids: list[str]) -> int:
    async def phase(workflow_id: str) -> str | None:
        try:
            handle = client.get_workflow_handle(workflow_id)
            progress = await handle.query(QUERY_PROGRESS, result_type=JobProgress)
            return progress.batch_status
        except Exception:
            return None

    statuses: list[str | None] = []
    for start in range(0, len(ids), 100):
        statuses += await asyncio.gather(*(phase(i) for i in ids[start : start + 100]))
    return sum(1 for s in statuses if s == "in_progress")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--poll-seconds", type=float, default=30.0)
    parser.add_argument("--window-seconds", type=float, default=20.0)
    parser.add_argument("--timeout-seconds", type=float, default=900.0)
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="bench-waiting-"))
    data = root / "data"
    data.mkdir()
    write_input(data / "in.jsonl", 3)
    env = await start_dev_server()
    # Each line takes an emulated hour: batches stay in progress for the whole measurement.
    emulator = EmulatorProcess(
        root / "emulator",
        knobs={"validating_seconds": 1, "line_latency_seconds": 3600, "batch_concurrency": 1},
    )
    queue = f"bench-{uuid.uuid4().hex[:6]}"
    worker = WorkerProcess(
        root / "worker.log",
        {
            "TEMPORAL_ADDRESS": env.client.service_client.config.target_host,
            "TEMPORAL_TASK_QUEUE": queue,
            "GATEWAY_URL": "",
            "BATCH_DATA_DIR": str(data),
        },
    )
    try:
        emulator.start()
        worker.env["GATEWAY_URL"] = emulator.base_url
        worker.start()
        assert worker.proc is not None
        proc = psutil.Process(worker.proc.pid)
        await asyncio.sleep(3)
        idle_rss, idle_cpu = await asyncio.to_thread(sample, proc, args.window_seconds)

        job = BatchJobInput(
            input_path="in.jsonl",
            output_path="out/{workflow_id}.output.jsonl",
            errors_path="out/{workflow_id}.errors.jsonl",
            poll_interval=timedelta(seconds=args.poll_seconds),
        )
        ids = [f"wait-{i:05d}" for i in range(args.jobs)]
        started = time.monotonic()
        for chunk in range(0, len(ids), 50):
            await asyncio.gather(
                *(
                    env.client.start_workflow(WORKFLOW_NAME, job, id=i, task_queue=queue)
                    for i in ids[chunk : chunk + 50]
                )
            )
        waiting = 0
        while time.monotonic() - started < args.timeout_seconds:
            waiting = await count_waiting(env.client, ids)
            if waiting == len(ids):
                break
            await asyncio.sleep(2)
        ramp = time.monotonic() - started
        busy_rss, busy_cpu = await asyncio.to_thread(sample, proc, args.window_seconds)

        print(f"jobs started                 {len(ids)}")
        print(f"jobs with batch in progress  {waiting}  (reached in {ramp:.0f} s)")
        print(f"poll interval                {args.poll_seconds:g} s")
        print(f"worker RSS idle (baseline)   {idle_rss:8.1f} MB")
        print(f"worker RSS, all waiting      {busy_rss:8.1f} MB   ratio {busy_rss / idle_rss:.2f}")
        print(
            f"  per waiting job            {(busy_rss - idle_rss) * 1000 / max(1, waiting):8.1f} KB"
        )
        print(f"worker CPU idle (baseline)   {idle_cpu:8.1f} % of a core")
        print(f"worker CPU, all waiting      {busy_cpu:8.1f} % of a core")
        print(f"emulator batches by status   {emulator.stats()['batches_by_status']}")
        print("PASS" if waiting == len(ids) else "FAIL: not every job reached in_progress")
        for i in ids:
            await env.client.get_workflow_handle(i).terminate("benchmark over")
    finally:
        worker.stop()
        emulator.stop()
        await env.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
