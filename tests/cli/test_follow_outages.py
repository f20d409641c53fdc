"""`starter.py run` follows a job through worker outages and a Temporal restart.

Real processes: the dev server, the emulator, worker.py and starter.py. The
job does not need the starter, so the starter waits out what the job waits out,
says so on its progress line, and ends with the job.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from cli import hints
from devstack.emulator import EmulatorProcess
from devstack.ports import free_port
from devstack.process import REPO_ROOT
from devstack.temporal import dev_server_path
from devstack.worker import WorkerProcess
from temporal_client import register_search_attributes
from tests.cli.starter_process import StarterProcess
from tests.e2e.conftest import Stack

pytestmark = pytest.mark.e2e

WAITING_FOR_A_WORKER = "waiting for a worker on task queue"
WAITING_FOR_TEMPORAL = "waiting for Temporal"


def run_args(stack_data: Path, workflow_id: str) -> list[str]:
    return [
        "run",
        str(stack_data / "in.jsonl"),
        "--poll-seconds",
        "1",
        "--refresh-seconds",
        "0.2",
        "--id",
        workflow_id,
    ]


def progress_after(stderr: str, marker: str) -> list[str]:
    """Progress lines printed after the first line containing marker, waiting lines left out."""
    lines = stderr.splitlines()
    first = next(i for i, line in enumerate(lines) if marker in line)
    return [line for line in lines[first + 1 :] if line.startswith("[") and "waiting" not in line]


async def test_a_job_started_with_no_worker_is_followed_until_one_runs_it(stack: Stack):
    stack.write_input("in.jsonl", 5)
    starter = StarterProcess(
        stack.logs, stack.worker_env(), *run_args(stack.data_dir, "no-worker-yet")
    )
    try:
        await starter.stderr_shows(WAITING_FOR_A_WORKER)
        with stack.worker():
            code = await starter.exit_code()
    finally:
        starter.kill()
    assert code == 0, starter.stderr()
    assert "5 total, 5 succeeded" in starter.stdout()
    assert f"{WAITING_FOR_A_WORKER} '{stack.task_queue}'" in starter.stderr()
    assert progress_after(starter.stderr(), WAITING_FOR_A_WORKER), starter.stderr()


async def test_a_worker_killed_mid_batch_is_waited_for_and_its_successor_followed(stack: Stack):
    stack.write_input("in.jsonl", 20)
    stack.emulator.set_knobs(line_latency_seconds=0.3, batch_concurrency=1)
    first = stack.worker("first").start()
    starter = StarterProcess(stack.logs, stack.worker_env(), *run_args(stack.data_dir, "killed"))
    try:
        await starter.stderr_shows("in_progress")
        first.kill()
        await starter.stderr_shows(WAITING_FOR_A_WORKER)
        with stack.worker("second"):
            code = await starter.exit_code()
    finally:
        first.kill()
        starter.kill()
    assert code == 0, starter.stderr()
    assert "20 total, 20 succeeded" in starter.stdout()
    assert progress_after(starter.stderr(), WAITING_FOR_A_WORKER), starter.stderr()


async def test_ctrl_c_still_stops_a_starter_that_waits_for_a_worker(stack: Stack):
    stack.write_input("in.jsonl", 5)
    starter = StarterProcess(stack.logs, stack.worker_env(), *run_args(stack.data_dir, "ctrl-c"))
    try:
        await starter.stderr_shows(WAITING_FOR_A_WORKER)
        interrupted = time.monotonic()
        starter.interrupt()
        code = await starter.exit_code(within=30)
        stopped_in = time.monotonic() - interrupted
    finally:
        starter.kill()
    assert code == 130
    last = starter.stderr().splitlines()[-1]
    assert last.startswith("stopped following after ")
    assert last.endswith(
        f"; job ctrl-c keeps running: run the same command again to follow it, "
        f"or {hints.starter('status', 'ctrl-c')}"
    )
    # The starter gives its unwinding 1 s, then ends regardless; the rest is process start-up
    # and a busy machine's scheduling, not a wait on a query (those take 5 s).
    assert stopped_in < 4.5, stopped_in


def test_run_exits_2_when_temporal_is_unreachable_at_start(tmp_path: Path):
    (tmp_path / "in.jsonl").write_text("{}\n")
    address = f"127.0.0.1:{free_port()}"
    done = subprocess.run(
        [sys.executable, "starter.py", "run", str(tmp_path / "in.jsonl")],
        cwd=REPO_ROOT,
        env={**os.environ, "TEMPORAL_ADDRESS": address, "BATCH_DATA_DIR": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"starter: cannot reach Temporal at {address} (namespace default): tcp connect error: "
        "Connection refused. Start one with `make up` (or `temporal server start-dev`), "
        "or set TEMPORAL_ADDRESS."
    ]


@asynccontextmanager
async def dev_server_on(port: int, db: Path) -> AsyncIterator[WorkflowEnvironment]:
    """A dev server that keeps its state in db, so a restart on the same port resumes jobs."""
    env = await WorkflowEnvironment.start_local(
        data_converter=pydantic_data_converter,
        dev_server_existing_path=dev_server_path(),
        port=port,
        ui=False,
        dev_server_extra_args=["--db-filename", str(db)],
    )
    try:
        await register_search_attributes(env.client)
        yield env
    finally:
        await env.shutdown()


async def test_the_starter_follows_a_job_through_a_temporal_restart(tmp_path: Path):
    port, db = free_port(), tmp_path / "temporal.db"
    data = tmp_path / "data"
    data.mkdir()
    emulator = EmulatorProcess(
        tmp_path / "emulator",
        knobs={
            "validating_seconds": 0.5,
            "finalizing_seconds": 0.5,
            "line_latency_seconds": 0.3,
            "batch_concurrency": 1,  # ~6 s in progress: long enough to see, and restart in
        },
    )
    worker: WorkerProcess | None = None
    starter: StarterProcess | None = None
    with emulator:
        try:
            async with dev_server_on(port, db) as server:
                stack = Stack(
                    client=server.client,
                    address=f"127.0.0.1:{port}",
                    emulator=emulator,
                    data_dir=data,
                    task_queue="restart",
                    logs=tmp_path / "logs",
                )
                stack.write_input("in.jsonl", 20)
                worker = stack.worker().start()
                starter = StarterProcess(stack.logs, stack.worker_env(), *run_args(data, "restart"))
                await starter.stderr_shows("in_progress")
            await starter.stderr_shows(WAITING_FOR_TEMPORAL)
            async with dev_server_on(port, db):
                code = await starter.exit_code()
        finally:
            if worker is not None:
                worker.kill()
            if starter is not None:
                starter.kill()
    assert code == 0, starter.stderr()
    assert "20 total, 20 succeeded" in starter.stdout()
    assert progress_after(starter.stderr(), WAITING_FOR_TEMPORAL), starter.stderr()
