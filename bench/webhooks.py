"""Benchmark: a batch's end heard through its event, against polling, in one run.

For each mode, on its own fresh dev server, emulator and ``worker.py`` (and,
for ``events``, the webhook receiver): N jobs are started, each with a small
input, and their batches are held in ``validating`` (the emulator's
``stuck_validating``) until every job waits. Then:

1. **Waiting cost.** For ``--window`` seconds nothing changes: the emulator's
   ``GET /batches/{id}`` count gives gateway calls per waiting job per hour,
   and the worker's CPU time is read before and after.
2. **Latency.** The batches are let go one every ``--spacing`` seconds (so
   their ends fall anywhere within a poll interval); each ends within a second.
   The emulator posts every batch's end to a small recorder in this process,
   which notes the time (the batch's end at the gateway, to the millisecond:
   the emulator's own ``completed_at`` is whole seconds) and, in ``events``
   mode, forwards the event unchanged to the receiver. The latency of a job is
   the modification time of its results file minus that end.

``polling`` is today's behaviour: the job's poll interval (``--poll-seconds``,
60 s by default, the most Azure asks) and no receiver. ``events`` runs the
receiver and a worker with ``WEBHOOK_FALLBACK_POLL_SECONDS`` (``--fallback``,
1800 s). The recorder's forwarding adds about a millisecond to ``events``.

    python -m bench.webhooks [--jobs 200] [--poll-seconds 60] [--fallback 1800]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
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
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from temporalio.client import Client

from contracts.constants import ENV_WEBHOOK_FALLBACK_POLL
from contracts.job import BatchJobInput, BatchJobResult
from contracts.names import (
    SEARCH_ATTRIBUTE_BATCH_ID,
    SEARCH_ATTRIBUTE_BATCH_STATUS,
    WORKFLOW_NAME,
)
from devstack.emulator import EmulatorProcess
from devstack.ports import LOCALHOST, free_port
from devstack.temporal import start_dev_server
from devstack.webhooks import WebhookReceiverProcess
from devstack.worker import WorkerProcess

MODES = ("polling", "events")
KNOBS = {
    "validating_seconds": 0,
    "finalizing_seconds": 0.2,
    "line_latency_seconds": 0.01,
    "force_outcome": "stuck_validating",
}
REQUESTS = 2


class EndRecorder:
    """Where the emulator posts batch events: notes each batch's end, forwards if told to."""

    def __init__(self, forward_to: str | None) -> None:
        self.ends: dict[str, float] = {}
        self.forward_to = forward_to
        self.port = free_port()
        self._http = httpx.AsyncClient(timeout=30)
        app = Starlette(routes=[Route("/webhooks", self.receive, methods=["POST"])])
        self._server = uvicorn.Server(
            uvicorn.Config(app, host=LOCALHOST, port=self.port, log_level="warning")
        )
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return f"http://{LOCALHOST}:{self.port}/webhooks"

    async def receive(self, request: Request) -> Response:
        at = time.time()
        body = await request.body()
        batch_id = json.loads(body)["data"]["id"]
        self.ends.setdefault(batch_id, at)
        if self.forward_to is None:
            return Response(status_code=200)
        headers = {k: v for k, v in request.headers.items() if k.startswith("webhook-")}
        answer = await self._http.post(self.forward_to, content=body, headers=headers)
        return Response(status_code=answer.status_code)

    async def __aenter__(self) -> EndRecorder:
        self._task = asyncio.create_task(self._server.serve())
        for _ in range(500):
            if self._server.started:
                return self
            await asyncio.sleep(0.02)
        raise RuntimeError("the event recorder did not start")

    async def __aexit__(self, *exc: object) -> None:
        self._server.should_exit = True
        if self._task is not None:
            await self._task
        await self._http.aclose()


@dataclass
class ModeRun:
    mode: str
    jobs: int
    window_seconds: float = 0.0
    reads_in_window: int = 0
    worker_cpu_in_window: float = 0.0
    latencies: list[float] = field(default_factory=list)
    failed: int = 0
    reads_in_all: int = 0

    def figures(self) -> dict[str, Any]:
        lat = sorted(self.latencies)
        per_hour = self.reads_in_window / self.jobs / self.window_seconds * 3600
        return {
            "mode": self.mode,
            "jobs": self.jobs,
            "finished": len(lat),
            "failed": self.failed,
            "latency_p50_s": round(statistics.median(lat), 2) if lat else None,
            "latency_p95_s": round(lat[int(0.95 * (len(lat) - 1))], 2) if lat else None,
            "latency_max_s": round(lat[-1], 2) if lat else None,
            "gateway_reads_per_waiting_job_per_hour": round(per_hour, 2),
            "gateway_reads_per_job_in_all": round(self.reads_in_all / self.jobs, 2),
            "worker_cpu_percent_while_waiting": round(
                100 * self.worker_cpu_in_window / self.window_seconds, 2
            ),
        }


def write_input(path: Path, tag: str) -> None:
    with path.open("w") as out:
        for i in range(REQUESTS):
            body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"{tag} {i}"}]}
            line = {"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions"}
            out.write(json.dumps({**line, "body": body}) + "\n")


def batch_reads(emulator: EmulatorProcess) -> int:
    return int(emulator.stats()["api_calls"].get("GET /batches/{id}", 0))


def cpu_seconds(pid: int | None) -> float:
    assert pid is not None
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


async def count(client: Client, status: str) -> int:
    query = f'WorkflowType="{WORKFLOW_NAME}" AND {SEARCH_ATTRIBUTE_BATCH_STATUS}="{status}"'
    return (await client.count_workflows(query)).count


async def run_mode(mode: str, args: argparse.Namespace, root: Path) -> ModeRun:
    run = ModeRun(mode, args.jobs)
    data = root / mode / "data"
    data.mkdir(parents=True)
    env = await start_dev_server()
    client = env.client
    address = client.service_client.config.target_host
    queue = f"bench-{mode}"
    try:
        with EmulatorProcess(root / mode / "emulator", knobs=KNOBS) as emulator:
            receiver = None
            if mode == "events":
                receiver = WebhookReceiverProcess(root / mode / "webhooks.log", address).start()
            try:
                async with EndRecorder(receiver.url if receiver else None) as recorder:
                    secret = receiver.secret if receiver else "whsec_" + "A" * 43
                    emulator.set_knobs(webhook_url=recorder.url, webhook_secret=secret)
                    worker_env = {
                        "TEMPORAL_ADDRESS": address,
                        "TEMPORAL_TASK_QUEUE": queue,
                        "GATEWAY_URL": emulator.base_url,
                        "BATCH_DATA_DIR": str(data),
                    }
                    if mode == "events":
                        worker_env[ENV_WEBHOOK_FALLBACK_POLL] = str(args.fallback)
                    with WorkerProcess(root / mode / "worker.log", worker_env) as worker:
                        await measure(run, args, client, queue, emulator, worker, recorder, data)
            finally:
                if receiver is not None:
                    receiver.stop()
    finally:
        await env.shutdown()
    return run


async def measure(
    run: ModeRun,
    args: argparse.Namespace,
    client: Client,
    queue: str,
    emulator: EmulatorProcess,
    worker: WorkerProcess,
    recorder: EndRecorder,
    data: Path,
) -> None:
    handles = []
    for i in range(args.jobs):
        write_input(data / f"in-{i}.jsonl", f"{run.mode}-{i}")
        job = BatchJobInput.model_validate(
            {
                "input_path": f"in-{i}.jsonl",
                "poll_interval": timedelta(seconds=args.poll_seconds),
            }
        )
        handles.append(
            await client.start_workflow(
                WORKFLOW_NAME,
                job,
                id=f"{run.mode}-{i}-{uuid.uuid4().hex[:6]}",
                task_queue=queue,
                result_type=BatchJobResult,
            )
        )
    began = time.monotonic()
    while (waiting := await count(client, "validating")) < args.jobs:
        if time.monotonic() - began > args.jobs * 3 + 120:
            raise RuntimeError(f"only {waiting} of {args.jobs} jobs reached their wait")
        await asyncio.sleep(2)
    await asyncio.sleep(args.settle)
    print(f"[{run.mode}] {args.jobs} jobs wait; measuring {args.window:.0f} s", flush=True)

    reads, cpu = batch_reads(emulator), cpu_seconds(worker.pid)
    started = time.monotonic()
    await asyncio.sleep(args.window)
    run.window_seconds = time.monotonic() - started
    run.reads_in_window = batch_reads(emulator) - reads
    run.worker_cpu_in_window = cpu_seconds(worker.pid) - cpu

    async with httpx.AsyncClient(base_url=emulator.base_url, timeout=30) as http:
        batch_ids = [
            str(wf.search_attributes[SEARCH_ATTRIBUTE_BATCH_ID][0])
            async for wf in client.list_workflows(f'TaskQueue="{queue}"')
        ]
        await http.patch("/_emulator/knobs", json={"force_outcome": "none"})
        print(f"[{run.mode}] letting {len(batch_ids)} batches go", flush=True)
        for batch_id in batch_ids:
            await http.post(f"/_emulator/batches/{batch_id}/force", json={"outcome": "none"})
            await asyncio.sleep(args.spacing)
    timeout = args.poll_seconds * 3 + 300
    for handle in handles:
        try:
            result = await asyncio.wait_for(handle.result(), timeout)
        except Exception as exc:
            print(f"[{run.mode}] {handle.id}: {exc}", file=sys.stderr)
            run.failed += 1
            continue
        end = recorder.ends.get(result.batch_id or "")
        if end is None:
            run.failed += 1
            continue
        written = (data / result.output_path).stat().st_mtime
        run.latencies.append(written - end)
    run.reads_in_all = batch_reads(emulator)


def table(runs: list[ModeRun]) -> str:
    rows = [r.figures() for r in runs]
    keys = [k for k in rows[0] if k != "mode"]
    lines = ["| | " + " | ".join(r["mode"] for r in rows) + " |", "| --- |" + " --- |" * len(rows)]
    lines += [f"| {k} | " + " | ".join(str(r[k]) for r in rows) + " |" for k in keys]
    return "\n".join(lines)


async def main_async(args: argparse.Namespace) -> int:
    runs = []
    with tempfile.TemporaryDirectory(prefix="bench-webhooks-") as tmp:
        for mode in args.modes.split(","):
            runs.append(await run_mode(mode, args, Path(tmp)))
            print(json.dumps(runs[-1].figures()), flush=True)
    print(table(runs))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--poll-seconds", type=float, default=60.0)
    parser.add_argument("--fallback", type=float, default=1800.0)
    parser.add_argument("--window", type=float, default=180.0, help="seconds of waiting measured")
    parser.add_argument("--settle", type=float, default=10.0, help="seconds before the window")
    parser.add_argument("--spacing", type=float, default=0.3, help="seconds between releases")
    return asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
