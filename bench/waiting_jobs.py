"""Benchmark: what N waiting batch jobs cost, waiting by the watch against waiting by retries.

For each design, in one invocation and each on its own fresh dev server,
emulator and ``worker.py``: N batches are created straight at the emulator
(one upload, N creates; each batch stays in progress for the whole run), the
processes are measured idle with those batches (the baseline), N jobs are
started attached to them (``batch_id``, so set-up is validate + attach), and
once every job waits, one poll interval is measured: the worker's memory and
CPU, the server's and the emulator's CPU, gateway calls per job per hour,
history events per job, and what a waiting job's pending activity shows
(its attempt, and whether it carries a failure). A side-by-side table with
ratios and the goals ends the run.

At most ``--setting-up`` jobs are between start and waiting at once, and
readiness is one visibility count per round (a query per job would make the
worker replay evicted workflows). The ramp has a deadline after which the run
measures what it reached. SIGTERM or SIGINT stops every process it started.

    python -m bench.waiting_jobs [--jobs 1000] [--designs watch,retries] [--poll-seconds 300]

The default poll is 300 s: Azure asks for at most one poll a minute, and at
10,000 jobs a 60 s poll is 167 gateway GETs a second; batches take hours.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import psutil
from temporalio.client import Client

from bench.waiting_table import PeakWatch, Window, measure, side_by_side
from contracts.constants import ENV_WEBHOOK_FALLBACK_POLL
from contracts.job import BatchJobInput
from contracts.names import SEARCH_ATTRIBUTE_BATCH_STATUS, WORKFLOW_NAME
from devstack.emulator import EmulatorProcess
from devstack.temporal import start_dev_server
from devstack.worker import WorkerProcess

DESIGNS = {
    "watch": "one watch_batch activity polls inside one attempt (completed asynchronously)",
    "retries": "one short poll activity, failed while unchanged and retried by Temporal",
}
WAITING_QUERY = f'WorkflowType="{WORKFLOW_NAME}" AND {SEARCH_ATTRIBUTE_BATCH_STATUS}="in_progress"'
INPUT_NAME = "in.jsonl"
SAMPLE = 20
# Each line takes 20 emulated hours, inside the 24 h window: batches stay in progress.
EMULATOR_KNOBS = {"validating_seconds": 0, "line_latency_seconds": 72_000, "batch_concurrency": 1}


def write_input(path: Path, requests: int) -> None:
    with path.open("w") as out:
        for i in range(requests):
            body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"q{i}"}]}
            line = {"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions"}
            out.write(json.dumps({**line, "body": body}) + "\n")


@dataclass
class DesignRun:
    """What one design cost, from one fresh set of processes."""

    design: str
    jobs: int
    batches_seconds: float = 0.0
    ramp_seconds: float = 0.0
    waiting: int = 0
    idle: Window = field(default_factory=Window)
    busy: Window = field(default_factory=Window)
    calls: int = 0
    events: tuple[list[int], list[int]] = ([], [])
    attempts: list[int] = field(default_factory=list)
    failures_shown: int = 0
    peak_mb: float = 0.0


async def create_batches(base_url: str, content: bytes, count: int, concurrency: int) -> list[str]:
    """One upload, then ``count`` batches on it, ``concurrency`` creates at a time."""
    async with httpx.AsyncClient(base_url=base_url + "/v1", timeout=60) as http:
        uploaded = await http.post(
            "/files",
            data={"purpose": "batch"},
            files={"file": (INPUT_NAME, content)},
        )
        uploaded.raise_for_status()
        body = {
            "input_file_id": uploaded.json()["id"],
            "endpoint": "/v1/chat/completions",
            "completion_window": "24h",
        }
        gate = asyncio.Semaphore(concurrency)

        async def one() -> str:
            async with gate:
                answer = await http.post("/batches", json=body)
                answer.raise_for_status()
                return str(answer.json()["id"])

        ids = await asyncio.gather(*(one() for _ in range(count)))
        for _ in range(600):
            stats = (await http.get(base_url + "/_emulator/stats")).json()
            if stats["batches_by_status"].get("in_progress", 0) >= count:
                return ids
            await asyncio.sleep(1)
    raise RuntimeError(f"the emulator's batches did not all reach in_progress: {stats}")


def server_process(known: set[int]) -> psutil.Process:
    """The dev server: the ``temporal`` child the SDK spawned for this process."""
    for child in psutil.Process().children(recursive=True):
        if child.pid not in known and "temporal" in child.name():
            return child
    raise RuntimeError("cannot find the Temporal dev server among this process's children")


async def waiting_count(client: Client) -> int:
    return (await client.count_workflows(WAITING_QUERY)).count


async def start_jobs(
    client: Client,
    jobs: list[tuple[str, BatchJobInput]],
    queue: str,
    concurrency: int,
    setting_up: int,
) -> None:
    """Start every job, keeping at most ``setting_up`` of them not yet waiting.

    Jobs in set-up (validate, attach) need the worker; unbounded, they
    outnumber its workflow cache and every workflow task becomes a replay.
    """
    gate = asyncio.Semaphore(concurrency)

    async def one(workflow_id: str, job: BatchJobInput) -> None:
        async with gate:
            await client.start_workflow(WORKFLOW_NAME, job, id=workflow_id, task_queue=queue)

    started = 0
    while started < len(jobs):
        room = min(setting_up - (started - await waiting_count(client)), len(jobs) - started)
        if room < min(100, len(jobs) - started):
            await asyncio.sleep(2)
            continue
        await asyncio.gather(*(one(i, job) for i, job in jobs[started : started + room]))
        started += room


async def wait_all_waiting(
    client: Client, count: int, starting: asyncio.Task[None], deadline: float
) -> int:
    """One visibility count a round until every job waits (batch in progress), or the deadline."""
    began = time.monotonic()
    waiting = 0
    while time.monotonic() < deadline:
        waiting = await waiting_count(client)
        if starting.done() and (failed := starting.exception()) is not None:
            raise RuntimeError("starting the jobs failed") from failed
        print(
            f"  {time.monotonic() - began:6.0f} s  started {'all' if starting.done() else '...'}"
            f"  waiting {waiting}/{count}  load {os.getloadavg()[0]:.1f}",
            flush=True,
        )
        if waiting >= count:
            break
        await asyncio.sleep(10)
    return waiting


async def history_events(client: Client, ids: list[str]) -> list[int]:
    lengths = []
    for workflow_id in ids:
        history = await client.get_workflow_handle(workflow_id).fetch_history()
        lengths.append(len(history.events))
    return lengths


async def pending_waits(client: Client, ids: list[str]) -> tuple[list[int], int]:
    """The attempt of each sampled job's pending wait, and how many show a last failure."""
    attempts, failures = [], 0
    for workflow_id in ids:
        described = await client.get_workflow_handle(workflow_id).describe()
        for pending in described.raw_description.pending_activities:
            attempts.append(pending.attempt)
            failures += pending.HasField("last_failure")
    return attempts, failures


async def run_design(design: str, args: argparse.Namespace) -> DesignRun:
    result = DesignRun(design=design, jobs=args.jobs)
    root = Path(tempfile.mkdtemp(prefix=f"bench-waiting-{design}-"))
    data = root / "data"
    data.mkdir()
    write_input(data / INPUT_NAME, 3)
    env = await start_dev_server()
    emulator = EmulatorProcess(root / "emulator", knobs=EMULATOR_KNOBS)
    queue = f"bench-{uuid.uuid4().hex[:6]}"
    worker = WorkerProcess(
        root / "worker.log",
        {
            "TEMPORAL_ADDRESS": env.client.service_client.config.target_host,
            "TEMPORAL_TASK_QUEUE": queue,
            "GATEWAY_URL": "",
            "BATCH_DATA_DIR": str(data),
            # The jobs attach to batches the benchmark made at the emulator.
            "BATCH_ATTACH_ANY_BATCH": "true",
        },
    )
    if args.fallback_seconds is not None:
        # Batch events configured (webhooks/): the watch reads its batch this rarely.
        worker.env[ENV_WEBHOOK_FALLBACK_POLL] = str(args.fallback_seconds)
    try:
        emulator.start()
        worker.env["GATEWAY_URL"] = emulator.base_url
        worker.start()
        assert worker.proc is not None and emulator.proc is not None
        procs = {
            "worker": psutil.Process(worker.proc.pid),
            "server": server_process({worker.proc.pid, emulator.proc.pid}),
            "emulator": psutil.Process(emulator.proc.pid),
        }
        peak = PeakWatch(procs["worker"])
        began = time.monotonic()
        batch_ids = await create_batches(
            emulator.base_url, (data / INPUT_NAME).read_bytes(), args.jobs, args.create_concurrency
        )
        result.batches_seconds = time.monotonic() - began
        print(f"[{design}] {args.jobs} batches in progress in {result.batches_seconds:.0f} s")
        result.idle = await asyncio.to_thread(measure, procs, args.idle_seconds)
        print(f"[{design}] idle baseline measured; load {result.idle.load}", flush=True)

        job = BatchJobInput(
            input_path=INPUT_NAME,
            output_path="out/{workflow_id}.output.jsonl",
            errors_path="out/{workflow_id}.errors.jsonl",
            poll_interval=timedelta(seconds=args.poll_seconds),
            wait_by=design,
        )
        if args.heartbeat_timeout_seconds is not None:
            job.heartbeat_timeout = timedelta(seconds=args.heartbeat_timeout_seconds)
        jobs = [
            (f"wait-{design}-{i:05d}", job.model_copy(update={"batch_id": batch_id}))
            for i, batch_id in enumerate(batch_ids)
        ]
        began = time.monotonic()
        starting = asyncio.create_task(
            start_jobs(env.client, jobs, queue, args.start_concurrency, args.setting_up)
        )
        try:
            result.waiting = await wait_all_waiting(
                env.client, len(jobs), starting, began + args.timeout_seconds
            )
        finally:
            starting.cancel()
        result.ramp_seconds = time.monotonic() - began

        window = args.window_seconds or max(20.0, args.poll_seconds)
        sample = random.Random(0).sample([i for i, _ in jobs], min(SAMPLE, len(jobs)))
        events_before = await history_events(env.client, sample)
        calls_before = emulator.stats()["api_requests"]
        result.busy = await asyncio.to_thread(measure, procs, window)
        result.calls = emulator.stats()["api_requests"] - calls_before
        result.events = (events_before, await history_events(env.client, sample))
        result.attempts, result.failures_shown = await pending_waits(env.client, sample)
        result.peak_mb = peak.stop()
        print("FIGURES " + json.dumps(figures(result, args), default=str), flush=True)
        return result
    finally:
        worker.stop()
        emulator.stop()
        await env.shutdown()


def figures(run: DesignRun, args: argparse.Namespace) -> dict[str, Any]:
    return {
        "design": run.design,
        "jobs": run.jobs,
        "poll_seconds": args.poll_seconds,
        "heartbeat_timeout_seconds": args.heartbeat_timeout_seconds,
        "fallback_seconds": args.fallback_seconds,
        "waiting": run.waiting,
        "batches_seconds": round(run.batches_seconds),
        "ramp_seconds": round(run.ramp_seconds),
        "idle": run.idle.__dict__,
        "waiting_window": run.busy.__dict__,
        "gateway_calls": run.calls,
        "history_events": run.events,
        "pending_attempts": run.attempts,
        "pending_with_failure": run.failures_shown,
        "worker_peak_rss_mb": round(run.peak_mb, 1),
    }


async def run(args: argparse.Namespace) -> bool:
    runs = []
    for design in args.designs:
        print(f"== {design}: {DESIGNS[design]}", flush=True)
        runs.append(await run_design(design, args))
    return side_by_side(runs, args.poll_seconds)


def designs(text: str) -> list[str]:
    chosen = [d.strip() for d in text.split(",") if d.strip()]
    unknown = [d for d in chosen if d not in DESIGNS]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"designs are {', '.join(DESIGNS)}; got {text!r}")
    return chosen


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument(
        "--designs",
        type=designs,
        default=list(DESIGNS),
        help="comma-separated, each run on fresh processes (default: watch,retries)",
    )
    parser.add_argument("--poll-seconds", type=float, default=300.0)
    parser.add_argument(
        "--heartbeat-timeout-seconds",
        type=float,
        default=None,
        help="the jobs' heartbeat_timeout (default the job's, 60 s); a watch beats every third",
    )
    parser.add_argument(
        "--fallback-seconds",
        type=float,
        default=None,
        help="the worker's WEBHOOK_FALLBACK_POLL_SECONDS: waiting as with batch events",
    )
    parser.add_argument("--idle-seconds", type=float, default=20.0)
    parser.add_argument(
        "--window-seconds",
        type=float,
        default=None,
        help="measurement window once all wait (default: one poll interval, at least 20 s)",
    )
    parser.add_argument("--create-concurrency", type=int, default=16)
    parser.add_argument("--start-concurrency", type=int, default=20)
    parser.add_argument(
        "--setting-up",
        type=int,
        default=500,
        help="most jobs started and not yet waiting (below the worker's cache of 1000)",
    )
    parser.add_argument(
        "--timeout-seconds",
        type=float,
        default=2400.0,
        help="per design: give up waiting for every job to wait after this, and report",
    )
    args = parser.parse_args()
    return 0 if asyncio.run(run_until_terminated(args)) else 1


async def run_until_terminated(args: argparse.Namespace) -> bool:
    """SIGTERM or SIGINT cancels the run, so its processes are stopped on the way out."""
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, task.cancel)
    return await run(args)


if __name__ == "__main__":
    sys.exit(main())
