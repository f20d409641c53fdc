"""Benchmark: the floor, what Temporal's round trips alone cost a job, against the plain script.

Issue 10 asks the project to stay under 2x a plain asyncio script's wall time
at N=200 concurrent small jobs. Besides its four activities and five workflow
tasks a job, the project validates, deletes gateway files, upserts search
attributes, records a patch marker and sends awaited heartbeats. This script
measures what is left without any of that: the plain script's own calls run as
bare workflows defined here (no heartbeats, upserts, markers, validation or
deletes; the default sandbox; one openai client a worker), so the ratio a
recorded step costs on this machine is known before anyone cuts more.

- ``bare-1``: one activity does the plain script's whole job
  (``bench.throughput.plain_job``);
- ``bare-3``: submit (upload and create), wait (polls inside one activity),
  collect (download and write);
- ``bare-4``: upload, create, wait, collect: the project's number of steps;
- ``project``: ``bench.throughput``'s ``bytecode`` variant, in the same run.

Each runs on its own fresh dev server, emulator and worker process (sources
compiled to bytecode first), with the plain script as the baseline of the same
run and the same table as ``bench.throughput``.

    python -m bench.throughput_floor [--jobs 200] [--variants bare-1,bare-3,bare-4,project]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import functools
import importlib
import os
import signal
import sys
import tempfile
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from temporalio import activity, workflow

with workflow.unsafe.imports_passed_through():
    import openai
    from openai.types import Batch as OpenAIBatch
    from temporalio.client import Client
    from temporalio.contrib.pydantic import pydantic_data_converter
    from temporalio.worker import Worker

    from bench.throughput import (
        EMULATOR_KNOBS,
        ENDPOINT,
        TERMINAL,
        VARIANTS,
        JobRunner,
        Load,
        SideReport,
        Variant,
        plain_job,
        print_reports,
        run_jobs,
        run_plain,
        run_project,
    )

STEP_TIMEOUT = timedelta(minutes=10)


@dataclass(frozen=True)
class BareJob:
    # Relative to the worker's data folder (BATCH_DATA_DIR), as the project's inputs are.
    input_path: str
    poll_seconds: float


@dataclass(frozen=True)
class Batch:
    id: str
    status: str
    output_file_id: str | None = None
    error_file_id: str | None = None


def snapshot(batch: OpenAIBatch) -> Batch:
    return Batch(batch.id, batch.status, batch.output_file_id, batch.error_file_id)


class BareActivities:
    """The plain script's calls as activities, on one openai client for the whole worker."""

    def __init__(self, client: openai.AsyncOpenAI, data_dir: Path) -> None:
        self.client = client
        self.data_dir = data_dir

    @activity.defn(name="bare_whole")
    async def whole(self, job: BareJob) -> str:
        return await plain_job(self.client, self.data_dir / job.input_path, job.poll_seconds)

    @activity.defn(name="bare_upload")
    async def upload(self, input_path: str) -> str:
        with (self.data_dir / input_path).open("rb") as stream:
            uploaded = await self.client.files.create(file=stream, purpose="batch")
        return uploaded.id

    @activity.defn(name="bare_create")
    async def create(self, file_id: str) -> Batch:
        batch = await self.client.batches.create(
            input_file_id=file_id, endpoint=ENDPOINT, completion_window="24h"
        )
        return snapshot(batch)

    @activity.defn(name="bare_submit")
    async def submit(self, input_path: str) -> Batch:
        return await self.create(await self.upload(input_path))

    @activity.defn(name="bare_wait")
    async def wait(self, batch_id: str, poll_seconds: float) -> Batch:
        """Sleep, read, until terminal: the plain script's loop after a non-terminal create."""
        while True:
            await asyncio.sleep(poll_seconds)
            batch = await self.client.batches.retrieve(batch_id)
            if batch.status in TERMINAL:
                return snapshot(batch)

    @activity.defn(name="bare_collect")
    async def collect(self, batch: Batch, input_path: str) -> str:
        path = self.data_dir / input_path
        for file_id, suffix in ((batch.output_file_id, "output"), (batch.error_file_id, "errors")):
            if file_id:
                content = await self.client.files.content(file_id)
                path.with_suffix(f".{suffix}.jsonl").write_bytes(content.content)
        return batch.status

    def all(self) -> list[Any]:
        return [self.whole, self.upload, self.create, self.submit, self.wait, self.collect]


async def wait_and_collect(batch: Batch, job: BareJob) -> str:
    if batch.status not in TERMINAL:
        batch = await workflow.execute_activity_method(
            BareActivities.wait,
            args=[batch.id, job.poll_seconds],
            start_to_close_timeout=STEP_TIMEOUT,
        )
    return await workflow.execute_activity_method(
        BareActivities.collect, args=[batch, job.input_path], start_to_close_timeout=STEP_TIMEOUT
    )


@workflow.defn(name="BareOne")
class BareOne:
    @workflow.run
    async def run(self, job: BareJob) -> str:
        return await workflow.execute_activity_method(
            BareActivities.whole, job, start_to_close_timeout=STEP_TIMEOUT
        )


@workflow.defn(name="BareThree")
class BareThree:
    @workflow.run
    async def run(self, job: BareJob) -> str:
        batch = await workflow.execute_activity_method(
            BareActivities.submit, job.input_path, start_to_close_timeout=STEP_TIMEOUT
        )
        return await wait_and_collect(batch, job)


@workflow.defn(name="BareFour")
class BareFour:
    @workflow.run
    async def run(self, job: BareJob) -> str:
        file_id = await workflow.execute_activity_method(
            BareActivities.upload, job.input_path, start_to_close_timeout=STEP_TIMEOUT
        )
        batch = await workflow.execute_activity_method(
            BareActivities.create, file_id, start_to_close_timeout=STEP_TIMEOUT
        )
        return await wait_and_collect(batch, job)


BARE_WORKFLOWS = {"bare-1": "BareOne", "bare-3": "BareThree", "bare-4": "BareFour"}
BARE_VARIANT = Variant(bytecode=True, worker_module="bench.throughput_floor")
ENV_ACTIVITY_SLOTS = "BENCH_BARE_ACTIVITY_SLOTS"
KNOWN = (*BARE_WORKFLOWS, "project")


async def run_bare_jobs(
    workflow_name: str,
    client: Client,
    queue: str,
    paths: list[Path],
    poll: float,
    eager: bool,
) -> tuple[list[str], int]:
    """bench.throughput.run_jobs for a bare workflow: same ids, statuses in the project's words."""
    handles = []
    for chunk in range(0, len(paths), 50):
        handles += await asyncio.gather(
            *(
                client.start_workflow(
                    workflow_name,
                    BareJob(input_path=f"data/{p.name}", poll_seconds=poll),
                    id=f"tp-{p.stem}",
                    task_queue=queue,
                    result_type=str,
                    request_eager_start=eager,
                )
                for p in paths[chunk : chunk + 50]
            )
        )
    statuses = await asyncio.gather(*(h.result() for h in handles))
    return ["succeeded" if s == "completed" else s for s in statuses], 0


def side(name: str, slots: int) -> tuple[Variant, JobRunner]:
    if name == "project":
        return VARIANTS["bytecode"], run_jobs
    variant = dataclasses.replace(BARE_VARIANT, worker_env={ENV_ACTIVITY_SLOTS: str(slots)})
    return variant, functools.partial(run_bare_jobs, BARE_WORKFLOWS[name])


def serve_worker() -> None:
    """The bare workflows' worker, on the environment bench.throughput.run_project gives one."""

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        client = await Client.connect(
            os.environ["TEMPORAL_ADDRESS"], data_converter=pydantic_data_converter
        )
        base_url = os.environ["GATEWAY_URL"] + "/v1"
        async with openai.AsyncOpenAI(base_url=base_url, api_key="x") as gateway:
            activities = BareActivities(gateway, Path(os.environ["BATCH_DATA_DIR"]))
            worker = Worker(
                client,
                task_queue=os.environ["TEMPORAL_TASK_QUEUE"],
                workflows=[BareOne, BareThree, BareFour],
                activities=activities.all(),
                max_concurrent_activities=int(os.environ[ENV_ACTIVITY_SLOTS]),
                graceful_shutdown_timeout=timedelta(seconds=5),
            )
            async with worker:
                await stop.wait()

    asyncio.run(serve())
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--requests", type=int, default=5)
    parser.add_argument("--poll-seconds", type=float, default=1.0)
    parser.add_argument("--variants", default="bare-1,bare-3,bare-4,project", help=",".join(KNOWN))
    parser.add_argument("--repeat", type=int, default=1, help="the whole run, each with its plain")
    parser.add_argument(
        "--activity-slots",
        type=int,
        default=1000,
        help="the bare worker's max_concurrent_activities: above --jobs, as the project's "
        "watch holds no slot while it waits (at 100, bare-1's 200 jobs run in two waves)",
    )
    parser.add_argument("--timeout-seconds", type=float, default=600.0, help="per side")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.variants.split(",") if n.strip()]
    unknown = [n for n in names if n not in KNOWN]
    if unknown:
        parser.error(f"unknown variants {unknown}; known: {', '.join(KNOWN)}")

    root = Path(tempfile.mkdtemp(prefix="bench-floor-"))
    load = Load(args.jobs, args.requests, args.poll_seconds)
    print(
        f"{args.jobs} jobs x {args.requests} requests, poll {args.poll_seconds:g} s, "
        f"emulator {EMULATOR_KNOBS}, bare activity slots {args.activity_slots}, "
        f"load average {os.getloadavg()[0]:.2f}, data {root}",
        flush=True,
    )
    failed: list[str] = []
    for run in range(args.repeat):
        async with asyncio.timeout(args.timeout_seconds):
            plain = await run_plain(root / f"{run}-plain", load)
        print(f"plain: {plain.wall:.2f} s, load average {os.getloadavg()[0]:.2f}", flush=True)
        reports: list[SideReport] = []
        for i, name in enumerate(names):
            variant, start_jobs = side(name, args.activity_slots)
            async with asyncio.timeout(args.timeout_seconds):
                report = await run_project(
                    name, variant, root / f"{run}-{i:02d}-{name}", load, start_jobs=start_jobs
                )
            print(f"{name}: {report.wall:.2f} s, load average {os.getloadavg()[0]:.2f}", flush=True)
            reports.append(report)
        print_reports(plain, reports)
        failed += [f"{run}:{r.name}" for r in (plain, *reports) if r.ok != r.jobs]
    print(f"load average at the end {os.getloadavg()[0]:.2f}")
    print("PASS  every job of every side succeeded" if not failed else f"FAIL  {failed}")
    return 1 if failed else 0


if __name__ == "__main__":
    if "--serve-worker" in sys.argv:
        # By its package name: the sandbox imports a workflow's module by name, never __main__.
        importlib.import_module("bench.throughput_floor").serve_worker()
    sys.exit(asyncio.run(main()))
