"""Benchmark: what N waiting batch jobs cost one worker, the Temporal server and the gateway.

Starts a dev server, an emulator whose batches stay in progress for an hour,
one ``worker.py`` and N jobs; waits until every job's batch is ``in_progress``;
then measures, over one poll interval, the worker's memory and CPU, the
server's and the emulator's CPU, the gateway calls per job per hour and the
history events per job, against the same processes idle before any job
started (the baseline, same run).

Built to scale on 2 cores: at most ``--setting-up`` jobs are between start
and batch creation at once, readiness is one visibility count per round (not
a query per job, which makes the worker replay evicted workflows), and the
ramp has a deadline after which the run measures and reports what it reached.
SIGTERM or SIGINT stops every process it started.

    python -m bench.waiting_jobs [--jobs 1000] [--poll-seconds 300] [--design A]

The default poll is 300 s: Azure asks for at most one poll a minute, and at
10,000 jobs a 60 s poll is 167 gateway GETs a second; batches take hours.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import psutil
from temporalio.client import Client

from bench.emulator_common import MB
from contracts.constants import ENV_MAX_CONCURRENT_ACTIVITIES
from contracts.job import BatchJobInput
from contracts.names import SEARCH_ATTRIBUTE_BATCH_STATUS, WORKFLOW_NAME
from devstack.emulator import EmulatorProcess
from devstack.temporal import start_dev_server
from devstack.worker import WorkerProcess

DESIGNS = {
    "A": "retry-as-poll: one short poll activity, retried by Temporal every poll interval",
    "B": "long poll: one activity per wait that polls in a loop and heartbeats",
}
RSS_GOAL_MB = 1000.0
CREATED_QUERY = (
    f'WorkflowType="{WORKFLOW_NAME}" AND '
    f'{SEARCH_ATTRIBUTE_BATCH_STATUS} IN ("validating", "in_progress")'
)
WAITING_QUERY = f'WorkflowType="{WORKFLOW_NAME}" AND {SEARCH_ATTRIBUTE_BATCH_STATUS}="in_progress"'


def job_input(design: str, poll: timedelta) -> BatchJobInput:
    """The job every benchmark workflow runs, for one polling design."""
    if design == "B":
        # Wired by the merge of the long-poll design: select it here (an input
        # field, or whatever the workflow decides from) and nothing else changes.
        raise SystemExit("design B (long poll) is not on this branch yet: run --design A")
    return BatchJobInput(
        input_path="in.jsonl",
        output_path="out/{workflow_id}.output.jsonl",
        errors_path="out/{workflow_id}.errors.jsonl",
        poll_interval=poll,
    )


def worker_activity_slots(design: str, jobs: int) -> int:
    """A long poll holds an activity slot for the whole wait; a retry timer holds none."""
    return jobs + 100 if design == "B" else 100


def write_input(path: Path, requests: int) -> None:
    with path.open("w") as out:
        for i in range(requests):
            body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"q{i}"}]}
            line = {"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions"}
            out.write(json.dumps({**line, "body": body}) + "\n")


@dataclass
class Window:
    """Mean RSS and CPU (% of one core) of each process over one window."""

    seconds: float
    rss_mb: dict[str, float] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)
    load: tuple[float, float, float] = (0.0, 0.0, 0.0)


def measure(procs: dict[str, psutil.Process], seconds: float) -> Window:
    """CPU from process times over the window, so a slow sampling loop cannot skew it."""
    start_times = {name: sum(p.cpu_times()[:2]) for name, p in procs.items()}
    rss: dict[str, list[int]] = {name: [] for name in procs}
    began = time.monotonic()
    while time.monotonic() - began < seconds:
        for name, p in procs.items():
            rss[name].append(p.memory_info().rss)
        time.sleep(1.0)
    elapsed = time.monotonic() - began
    load = os.getloadavg()
    window = Window(seconds=elapsed, load=(round(load[0], 1), round(load[1], 1), round(load[2], 1)))
    for name, p in procs.items():
        window.cpu[name] = (sum(p.cpu_times()[:2]) - start_times[name]) / elapsed * 100
        window.rss_mb[name] = sum(rss[name]) / len(rss[name]) / MB
    return window


class PeakWatch:
    """The worker's peak RSS over the whole run, sampled in a thread."""

    def __init__(self, proc: psutil.Process) -> None:
        self.proc = proc
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            try:
                self.peak = max(self.peak, self.proc.memory_info().rss)
            except psutil.Error:
                return

    def stop(self) -> float:
        self._stop.set()
        self._thread.join(timeout=5)
        return self.peak / MB


def server_process(known: set[int]) -> psutil.Process:
    """The dev server: the ``temporal`` child the SDK spawned for this process."""
    for child in psutil.Process().children(recursive=True):
        if child.pid not in known and "temporal" in child.name():
            return child
    raise RuntimeError("cannot find the Temporal dev server among this process's children")


async def start_jobs(
    client: Client,
    ids: list[str],
    job: BatchJobInput,
    queue: str,
    concurrency: int,
    setting_up: int,
) -> None:
    """Start every job, keeping at most ``setting_up`` of them before their batch exists.

    Jobs in set-up (validate, upload, create) need the worker; unbounded, they
    outnumber its workflow cache and every workflow task becomes a replay. A
    job whose batch exists waits on a server-side retry timer and needs nothing.
    """
    gate = asyncio.Semaphore(concurrency)

    async def one(workflow_id: str) -> None:
        async with gate:
            await client.start_workflow(WORKFLOW_NAME, job, id=workflow_id, task_queue=queue)

    started = 0
    while started < len(ids):
        created = (await client.count_workflows(CREATED_QUERY)).count
        room = min(setting_up - (started - created), len(ids) - started)
        if room < min(100, len(ids) - started):
            await asyncio.sleep(2)
            continue
        await asyncio.gather(*(one(i) for i in ids[started : started + room]))
        started += room


async def wait_all_waiting(
    client: Client, ids: list[str], starting: asyncio.Task[None], deadline: float
) -> int:
    """One visibility count a round until every job's batch is in progress, or the deadline."""
    began = time.monotonic()
    waiting = 0
    started_in: float | None = None
    most_in: float | None = None
    while time.monotonic() < deadline:
        waiting = (await client.count_workflows(WAITING_QUERY)).count
        if starting.done() and (failed := starting.exception()) is not None:
            raise RuntimeError("starting the jobs failed") from failed
        if started_in is None and starting.done():
            started_in = time.monotonic() - began
            print(f"  all {len(ids)} jobs started within {started_in:.0f} s", flush=True)
        print(
            f"  {time.monotonic() - began:6.0f} s  started {'all' if starting.done() else '...'}"
            f"  in_progress {waiting}/{len(ids)}  load {os.getloadavg()[0]:.1f}",
            flush=True,
        )
        if most_in is None and waiting >= 0.99 * len(ids):
            most_in = time.monotonic() - began
            print(f"  99% in progress within {most_in:.0f} s", flush=True)
        if waiting >= len(ids):
            break
        await asyncio.sleep(10)
    return waiting


async def history_events(client: Client, ids: list[str]) -> list[int]:
    lengths = []
    for workflow_id in ids:
        history = await client.get_workflow_handle(workflow_id).fetch_history()
        lengths.append(len(history.events))
    return lengths


def report(
    args: argparse.Namespace,
    idle: Window,
    busy: Window,
    waiting: int,
    ramp: float,
    calls: int,
    events: tuple[list[int], list[int]],
    peak_mb: float,
) -> bool:
    jobs = args.jobs
    print(f"design                       {args.design}: {DESIGNS[args.design]}")
    print(f"jobs started                 {jobs}")
    print(f"jobs with batch in progress  {waiting}  (all reached in {ramp:.0f} s)")
    print(f"poll interval                {args.poll_seconds:g} s")
    print(f"measured over                {busy.seconds:.0f} s (idle baseline {idle.seconds:.0f} s)")
    w_idle, w_busy = idle.rss_mb["worker"], busy.rss_mb["worker"]
    print(f"worker RSS idle (baseline)   {w_idle:8.1f} MB")
    print(f"worker RSS, all waiting      {w_busy:8.1f} MB   ratio {w_busy / w_idle:.2f}")
    print(f"  per waiting job            {(w_busy - w_idle) * 1000 / max(1, waiting):8.1f} KB")
    print(f"worker RSS peak, whole run   {peak_mb:8.1f} MB")
    print(
        f"server RSS idle, waiting     {idle.rss_mb['server']:8.1f}, {busy.rss_mb['server']:.1f} MB"
    )
    for name in ("worker", "server", "emulator"):
        print(
            f"{name + ' CPU':<12} idle {idle.cpu[name]:6.1f} %, waiting {busy.cpu[name]:6.1f} %"
            "  (of one core)"
        )
    per_hour = calls / max(1, waiting) / (busy.seconds / 3600)
    print(f"gateway calls                {calls} in the window: {per_hour:.1f} a job an hour")
    print(f"history events per job       {events[0]} before, {events[1]} after (same jobs)")
    print(f"load average (1,5,15 min)    idle {idle.load}, waiting {busy.load}")
    print("FIGURES " + json.dumps({
        "design": args.design, "jobs": jobs, "poll_seconds": args.poll_seconds,
        "waiting": waiting, "ramp_seconds": round(ramp),
        "idle": idle.__dict__, "waiting_window": busy.__dict__,
        "gateway_calls_per_job_hour": round(per_hour, 2), "history_events": events,
        "worker_peak_rss_mb": round(peak_mb, 1),
    }, default=str))  # fmt: skip
    ok = True
    for passed, what in (
        (waiting == jobs, f"every job reached in_progress ({waiting}/{jobs})"),
        (peak_mb < RSS_GOAL_MB, f"worker peak RSS {peak_mb:.0f} MB < {RSS_GOAL_MB:.0f} MB"),
        (events[0] == events[1], "waiting a poll interval added no history events"),
    ):
        print(("PASS  " if passed else "FAIL  ") + what)
        ok = ok and passed
    return ok


async def run(args: argparse.Namespace) -> bool:
    job = job_input(args.design, timedelta(seconds=args.poll_seconds))
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
            ENV_MAX_CONCURRENT_ACTIVITIES: str(worker_activity_slots(args.design, args.jobs)),
        },
    )
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
        await asyncio.sleep(3)
        idle = await asyncio.to_thread(measure, procs, args.idle_seconds)
        print(f"idle baseline measured; load {idle.load}; starting {args.jobs} jobs", flush=True)

        ids = [f"wait-{i:05d}" for i in range(args.jobs)]
        began = time.monotonic()
        starting = asyncio.create_task(
            start_jobs(env.client, ids, job, queue, args.start_concurrency, args.setting_up)
        )
        try:
            waiting = await wait_all_waiting(
                env.client, ids, starting, began + args.timeout_seconds
            )
        finally:
            starting.cancel()
        ramp = time.monotonic() - began

        window = args.window_seconds or max(20.0, args.poll_seconds)
        sample = [w.id async for w in env.client.list_workflows(WAITING_QUERY, limit=5)]
        events_before = await history_events(env.client, sample)
        calls_before = emulator.stats()["api_requests"]
        busy = await asyncio.to_thread(measure, procs, window)
        calls = emulator.stats()["api_requests"] - calls_before
        events = await history_events(env.client, sample)
        return report(args, idle, busy, waiting, ramp, calls, (events_before, events), peak.stop())
    finally:
        worker.stop()
        emulator.stop()
        await env.shutdown()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--design", choices=sorted(DESIGNS), default="A")
    parser.add_argument("--poll-seconds", type=float, default=300.0)
    parser.add_argument("--idle-seconds", type=float, default=20.0)
    parser.add_argument(
        "--window-seconds",
        type=float,
        default=None,
        help="measurement window once all wait (default: one poll interval, at least 20 s)",
    )
    parser.add_argument("--start-concurrency", type=int, default=20)
    parser.add_argument(
        "--setting-up",
        type=int,
        default=500,
        help="most jobs started whose batch is not created yet (below the worker's cache of 1000)",
    )
    parser.add_argument(
        "--timeout-seconds",
        type=float,
        default=2400.0,
        help="give up waiting for every job to be in progress after this, and report",
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
