"""Benchmark: the worker's peak memory while it uploads and downloads a 200 MB file.

Starts a Temporal dev server, the gateway emulator and a real worker process
(worker.py) on 127.0.0.1, writes a ~200 MB JSONL input (50,000 embedding
requests of ~4 KB, answered with ~4 KB embeddings so the results file is about
as large), runs one BatchJobWorkflow and samples the worker's resident memory
every 20 ms. The history's activity events give the windows of each step.

Baselines, measured in the same run: the worker's idle RSS before the job
(memory), and a plain copy of the same bytes on the same disk (throughput).

    python -m bench.worker_memory [--mb 200] [--lines 50000]

Exits 1 if the worker's peak RSS grows by more than --max-growth-mb (default
100) over idle during upload or download, i.e. if the file sits in memory.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import psutil
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHistory

import contracts.names as names
from bench.emulator_common import MB
from bench.emulator_files import timed_copy
from contracts.job import BatchJobInput, BatchJobResult, InputLimits, JobStatus
from devstack.emulator import EmulatorProcess
from devstack.temporal import start_dev_server
from devstack.worker import WorkerProcess

SAMPLE_SECONDS = 0.02
STEPS = (
    names.ACTIVITY_SUBMIT_BATCH,
    names.ACTIVITY_AWAIT_STATUS_CHANGE,
    names.ACTIVITY_COLLECT_RESULTS,
)
WORDS = "durable batch queue token model answer workflow retry gateway result".split()


# -- input -----------------------------------------------------------------------------------


def embedding_dimensions(line_bytes: int) -> int:
    """Dimensions whose emulated answer line is about line_bytes long (~8.75 bytes a value)."""
    return max(16, (line_bytes - 500) * 4 // 35)


def make_input(path: Path, lines: int, line_bytes: int) -> int:
    """Write `lines` valid embedding requests of exactly `line_bytes` bytes each."""
    dims = embedding_dimensions(line_bytes)
    text = " ".join(WORDS[i % len(WORDS)] for i in range(line_bytes))
    with path.open("w", encoding="utf-8") as out:
        for i in range(lines):
            head = {
                "custom_id": f"req-{i:08d}",
                "method": "POST",
                "url": "/v1/embeddings",
                "body": {"model": "text-embedding-3-small", "dimensions": dims, "input": ""},
            }
            empty = len(json.dumps(head)) + 1
            head["body"]["input"] = f"{i} {text}"[: max(1, line_bytes - empty)]  # type: ignore[index]
            out.write(json.dumps(head) + "\n")
    return path.stat().st_size


# -- history windows -------------------------------------------------------------------------


@dataclass
class Window:
    start: float
    end: float

    @property
    def seconds(self) -> float:
        return self.end - self.start


def activity_windows(history: WorkflowHistory) -> dict[str, Window]:
    """Started-to-completed wall times of each activity (the last attempt's start)."""
    names: dict[int, str] = {}
    started: dict[int, float] = {}
    windows: dict[str, Window] = {}
    for event in history.events:
        when = event.event_time.ToMicroseconds() / 1e6
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            names[event.event_id] = (
                event.activity_task_scheduled_event_attributes.activity_type.name
            )
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            started[event.activity_task_started_event_attributes.scheduled_event_id] = when
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            scheduled = event.activity_task_completed_event_attributes.scheduled_event_id
            windows[names[scheduled]] = Window(started[scheduled], when)
    return windows


# -- memory sampling -------------------------------------------------------------------------


@dataclass
class Sample:
    at: float
    rss: int
    written: int  # write_chars: bytes the process passed to write()/send(), files and sockets


@dataclass
class RssSampler:
    """Samples a process's RSS and written bytes every `interval` seconds, in a thread."""

    pid: int
    interval: float = SAMPLE_SECONDS
    samples: list[Sample] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._proc = psutil.Process(self.pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with self._proc.oneshot():
                    rss = self._proc.memory_info().rss
                    written = self._proc.io_counters().write_chars
            except psutil.Error:
                return
            self.samples.append(Sample(time.time(), rss, written))
            time.sleep(self.interval)

    def start(self) -> RssSampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def between(self, window: Window) -> list[Sample]:
        return [s for s in self.samples if window.start <= s.at <= window.end]

    def transfer(self, window: Window, nbytes: int) -> Window | None:
        """When, inside window, the first `nbytes` written went from 1% to 99% done.

        send()/recv() on sockets are not counted, only write() calls: so the upload
        is timed on the emulator, which writes the body to disk as it arrives, and
        the download on the worker, which writes its .part file as the body arrives
        (reading the input ids before it writes nothing).
        """
        # The last write can land after the activity's completion was recorded, and
        # is seen up to one sampling interval later: look a little past the end.
        inside = self.between(Window(window.start, window.end + 5 * self.interval))
        if not inside:
            return None
        base = inside[0].written
        first = next((s.at for s in inside if s.written - base >= nbytes * 0.01), None)
        last = next((s.at for s in inside if s.written - base >= nbytes * 0.99), None)
        if first is None or last is None or last <= first:
            return None
        return Window(first, last)


# -- the run ---------------------------------------------------------------------------------


async def wait_for_log(worker: WorkerProcess, text: str, within: float) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if text in worker.log():
            return
        if worker.proc is not None and worker.proc.poll() is not None:
            raise RuntimeError(f"worker exited at start-up:\n{worker.log()[-3000:]}")
        await asyncio.sleep(0.1)
    raise RuntimeError(f"worker not ready after {within}s:\n{worker.log()[-3000:]}")


async def run_job(
    client: Client, task_queue: str, size: int, lines: int, within: float
) -> tuple[BatchJobResult, WorkflowHistory]:
    job = BatchJobInput(
        input_path="input.jsonl",
        endpoint="/v1/embeddings",
        poll_interval=timedelta(seconds=1),
        limits=InputLimits(max_requests=max(lines, 50_000), max_bytes=max(size, 200 * 1024 * 1024)),
    )
    handle = await client.start_workflow(
        "BatchJobWorkflow",
        job,
        id=f"bench-memory-{uuid.uuid4().hex[:8]}",
        task_queue=task_queue,
        result_type=BatchJobResult,
        execution_timeout=timedelta(seconds=within),
    )
    result = await asyncio.wait_for(handle.result(), within + 30)
    return result, await handle.fetch_history()


def mb(value: float) -> str:
    return f"{value / MB:7.1f} MB"


async def run(opts: argparse.Namespace) -> bool:
    line_bytes = opts.mb * MB // opts.lines
    with tempfile.TemporaryDirectory(prefix="bench-worker-memory-") as tmp:
        root = Path(tmp)
        data = root / "data"
        data.mkdir()
        src = data / "input.jsonl"
        print(f"writing {opts.lines} lines of {line_bytes} bytes ...", flush=True)
        size = make_input(src, opts.lines, line_bytes)
        copy_s = timed_copy(src, root / "copy.jsonl")
        (root / "copy.jsonl").unlink()

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
                task_queue = f"bench-memory-{uuid.uuid4().hex[:8]}"
                worker = WorkerProcess(
                    root / "worker.log",
                    {
                        "TEMPORAL_ADDRESS": env.client.service_client.config.target_host,
                        "TEMPORAL_NAMESPACE": "default",
                        "TEMPORAL_TASK_QUEUE": task_queue,
                        "GATEWAY_URL": emu.base_url,
                        "BATCH_DATA_DIR": str(data),
                    },
                )
                with worker:
                    assert worker.proc is not None
                    await wait_for_log(worker, "worker on task queue", 30)
                    assert emu.pid is not None
                    sampler = RssSampler(worker.proc.pid).start()
                    emu_sampler = RssSampler(emu.pid).start()
                    await asyncio.sleep(opts.idle_seconds)
                    idle_end = time.time()
                    print("running the job ...", flush=True)
                    started = time.perf_counter()
                    try:
                        result, history = await run_job(
                            env.client, task_queue, size, opts.lines, opts.timeout
                        )
                    finally:
                        sampler.stop()
                        emu_sampler.stop()
                    job_s = time.perf_counter() - started
        finally:
            await env.shutdown()
        output_size = (data / "input.output.jsonl").stat().st_size

    idle_samples = [x.rss for x in sampler.samples if x.at <= idle_end]
    idle = statistics.median(idle_samples)
    windows = activity_windows(history)
    # Jobs validate, upload and create in one step (submit-v1).
    upload = windows[names.ACTIVITY_SUBMIT_BATCH]
    collect = windows["collect_results"]
    rows: list[tuple[str, Window | None]] = [
        ("submit_batch", upload),
        ("  upload transfer", emu_sampler.transfer(upload, size)),
        ("wait (polls)", Window(upload.end, collect.start)),
        ("collect_results", collect),
        ("  download transfer", sampler.transfer(collect, output_size)),
    ]

    print()
    print(
        f"job: {result.status.value}, {result.requests.succeeded}/{result.requests.total} "
        f"succeeded, {job_s:.1f} s; worker sampled every {SAMPLE_SECONDS * 1000:.0f} ms "
        f"({len(sampler.samples)} samples)"
    )
    print(f"input file        {mb(size)} ({opts.lines} lines)")
    print(f"results file      {mb(output_size)} (downloaded, joined to the input, written)")
    print(f"baseline: idle worker RSS {mb(idle)} (median of {len(idle_samples)} samples)")
    print()
    print(f"{'step':<20} {'seconds':>8} {'peak RSS':>11} {'over idle':>11} {'peak/idle':>9}")
    growth: dict[str, float] = {}
    for label, window in rows:
        if window is None:
            print(f"{label:<20} (not found)")
            continue
        peak = max((x.rss for x in sampler.between(window)), default=idle)
        growth[label.strip()] = peak - idle
        print(
            f"{label:<20} {window.seconds:>8.2f} {mb(peak):>11} {mb(peak - idle):>11} "
            f"{peak / idle:>8.2f}x"
        )
    overall = max(x.rss for x in sampler.samples)
    print(
        f"{'whole job':<20} {job_s:>8.2f} {mb(overall):>11} {mb(overall - idle):>11} "
        f"{overall / idle:>8.2f}x"
    )

    copy_rate = size / MB / copy_s
    print()
    print(f"{'baseline: plain copy':<32} {copy_rate:8.1f} MB/s ({copy_s:.2f} s)")
    # Transfers are timed from 1% to 99% of their bytes: 98% of them in that window.
    throughput = [
        ("upload transfer", size * 0.98, rows[1][1]),
        ("submit_batch (+ re-hash)", size, upload),
        ("download transfer", output_size * 0.98, rows[4][1]),
        ("collect_results (ids+dl+join)", output_size, collect),
    ]
    for label, nbytes, window in throughput:
        if window is None or window.seconds <= 0:
            print(f"{label:<32} (not measured)")
            continue
        rate = nbytes / MB / window.seconds
        print(
            f"{label:<32} {rate:8.1f} MB/s ({window.seconds:.2f} s)  "
            f"ratio to copy {rate / copy_rate:5.2f}"
        )

    limit = opts.max_growth_mb * MB
    up, down = growth.get("submit_batch", -1.0), growth.get("collect_results", -1.0)
    checks = [
        (
            f"upload: peak RSS over idle {up / MB:.1f} MB < {opts.max_growth_mb} MB",
            0 <= up < limit,
        ),
        (
            f"download and collect: peak RSS over idle {down / MB:.1f} MB "
            f"< {opts.max_growth_mb} MB",
            0 <= down < limit,
        ),
        (
            f"every request succeeded ({result.requests.succeeded}/{opts.lines})",
            result.status is JobStatus.SUCCEEDED and result.requests.succeeded == opts.lines,
        ),
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
    args.add_argument("--max-growth-mb", type=int, default=100, help="FAIL above this growth")
    opts = args.parse_args()
    sys.exit(0 if asyncio.run(run(opts)) else 1)


if __name__ == "__main__":
    main()
