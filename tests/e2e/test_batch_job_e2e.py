"""The whole job on real processes: dev server, emulator, worker(s), the starter CLI.

The kill tests SIGKILL the worker at each step, including the window where the
gateway has acted but the worker has not heard, start a new one, and check
that nothing was lost, nothing ran twice and nothing was created twice.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from contracts.job import JobPhase, JobStatus
from contracts.names import SEARCH_ATTRIBUTE_BATCH_ID, SEARCH_ATTRIBUTE_BATCH_STATUS
from devstack.process import REPO_ROOT
from tests.e2e.conftest import Stack
from tests.e2e.helpers import (
    assert_each_request_exactly_once,
    fast_job,
    gateway_objects,
    ids_in,
    start,
    wait_for,
)

pytestmark = pytest.mark.e2e


async def test_a_job_completes_end_to_end_with_every_response(stack: Stack):
    stack.write_input("in.jsonl", 20)
    with stack.worker():
        handle = await start(stack, fast_job(metadata={"team": "catalog"}))
        result = await asyncio.wait_for(handle.result(), 60)
    assert result.status is JobStatus.SUCCEEDED
    assert result.requests.succeeded == 20
    assert result.usage.total_tokens > 0
    assert_each_request_exactly_once(stack, result, 20)
    files, batches = gateway_objects(stack, handle.id)
    assert files == [], "the job deleted its upload once the results were collected"
    assert len(batches) == 1
    assert result.gateway_files is not None
    assert result.gateway_files.deleted == [result.input_file_id, result.output_file_id]
    assert stack.emulator.stats()["api_calls"]["POST /files"] == 1
    async with httpx.AsyncClient(base_url=stack.emulator.base_url, timeout=10) as http:
        assert (await http.get(f"/files/{result.output_file_id}")).status_code == 404
    assert batches[0]["metadata"]["team"] == "catalog"
    history = await handle.fetch_history()
    assert len(history.events) < 60
    description = await handle.describe()
    assert description.typed_search_attributes is not None
    attrs = description.search_attributes
    assert attrs[SEARCH_ATTRIBUTE_BATCH_STATUS] == ["completed"]
    assert attrs[SEARCH_ATTRIBUTE_BATCH_ID] == [result.batch_id]


@pytest.mark.parametrize(
    "phase",
    [JobPhase.UPLOADING, JobPhase.CREATING_BATCH, JobPhase.WAITING, JobPhase.DOWNLOADING],
)
async def test_a_worker_killed_mid_step_loses_nothing_and_pays_once(stack: Stack, phase: JobPhase):
    count = 40
    stack.write_input("in.jsonl", count)
    if phase is JobPhase.WAITING:
        stack.emulator.set_knobs(line_latency_seconds=0.25, batch_concurrency=1)
    elif phase is not JobPhase.DOWNLOADING:
        # The gateway does the work at once but answers late: the worker dies
        # after the upload or the batch exists, before it hears of it.
        stack.emulator.set_knobs(response_delay_seconds=3)

    first = stack.worker("first").start()
    handle = await start(stack, fast_job())
    if phase is JobPhase.DOWNLOADING:
        await wait_for(handle, lambda p: p.batch_status == "finalizing")
        stack.emulator.set_knobs(response_delay_seconds=1.5)
    if phase is JobPhase.WAITING:
        await wait_for(
            handle,
            lambda p: bool(p.counts and p.counts.completed > 0) or p.batch_status == "in_progress",
        )
        await asyncio.sleep(1.5)
    elif phase is JobPhase.CREATING_BATCH:
        # A new job creates inside its submit step (shown as uploading): the worker
        # dies once the batch exists, while the gateway holds back its answer.
        await wait_for(handle, lambda p: p.phase is JobPhase.UPLOADING)
        for _ in range(200):
            if gateway_objects(stack, handle.id)[1]:
                break
            await asyncio.sleep(0.05)
        assert gateway_objects(stack, handle.id)[1], "the submit never created the batch"
    else:
        await wait_for(handle, lambda p: p.phase is phase)
        await asyncio.sleep(0.8)
    first.kill()
    stack.emulator.set_knobs(response_delay_seconds=0)

    with stack.worker("second"):
        result = await asyncio.wait_for(handle.result(), 90)

    assert result.status is JobStatus.SUCCEEDED, result.reason
    assert result.requests.succeeded == count
    assert_each_request_exactly_once(stack, result, count)
    files, batches = gateway_objects(stack, handle.id)
    # The job deletes its own upload at the end: a second one would be left behind.
    assert files == [], f"{len(files)} uploads left at the gateway"
    assert len(batches) == 1, f"{len(batches)} batches at the gateway"
    assert batches[0]["id"] == result.batch_id


async def test_failed_lines_inside_a_completed_batch_are_reported(stack: Stack):
    stack.write_input("in.jsonl", 60)
    stack.emulator.set_knobs(line_failure_rate=0.2, seed=7)
    with stack.worker():
        handle = await start(stack, fast_job())
        result = await asyncio.wait_for(handle.result(), 60)
    assert result.status is JobStatus.COMPLETED_WITH_FAILURES
    assert result.requests.failed > 0
    assert result.requests.succeeded + result.requests.failed == 60
    assert result.batch_counts is not None
    assert result.batch_counts.failed == result.requests.failed
    assert_each_request_exactly_once(stack, result, 60)


async def test_the_starter_runs_a_job_and_reports_it(stack: Stack):
    stack.write_input("in.jsonl", 5)
    env = {
        **os.environ,
        **stack.worker_env(),
        "TEMPORAL_WEB_UI": "http://ui.example:8233",
    }
    with stack.worker():
        run = await asyncio.to_thread(
            subprocess.run,
            [
                sys.executable,
                "starter.py",
                "run",
                str(stack.data_dir / "in.jsonl"),
                "--output",
                str(stack.data_dir / "out.jsonl"),
                "--poll-seconds",
                "1",
                "--id",
                "cli-job-1",
            ],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert run.returncode == 0, run.stderr
        assert "status:   succeeded" in run.stdout
        assert "5 total, 5 succeeded" in run.stdout
        assert "http://ui.example:8233/namespaces/default/workflows/cli-job-1" in run.stdout
        assert sorted(ids_in(stack.data_dir / "out.jsonl")) == sorted(f"req-{i}" for i in range(5))

        def cli(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "starter.py", *args],
                cwd=REPO_ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )

        result = await asyncio.to_thread(cli, "result", "cli-job-1", "--json")
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["requests"]["succeeded"] == 5
        status = await asyncio.to_thread(cli, "status", "cli-job-1")
        assert "COMPLETED" in status.stdout and "5/5 finished" in status.stdout
        # What the Web UI's list and workflow page show at the top, and status repeats.
        said = "5 requests to gpt-4o-mini · /v1/chat/completions · in.jsonl → out.jsonl"
        described = await stack.client.get_workflow_handle("cli-job-1").describe()
        assert await described.static_summary() == said
        assert "**model** gpt-4o-mini" in (await described.static_details() or "")
        assert f"job:      {said}" in status.stdout
        listing = await asyncio.to_thread(cli, "list")
        assert "cli-job-1" in listing.stdout


async def test_the_starter_says_what_to_start_when_temporal_is_down(tmp_path: Path):
    run = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "starter.py", "list"],
        cwd=REPO_ROOT,
        env={**os.environ, "TEMPORAL_ADDRESS": "127.0.0.1:1"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "cannot reach Temporal at 127.0.0.1:1" in lines[0]
    assert "make up" in lines[0]


async def test_the_worker_shuts_down_gracefully_on_sigterm(stack: Stack):
    worker = stack.worker("graceful").start()
    for _ in range(100):
        if "worker on task queue" in worker.log():
            break
        await asyncio.sleep(0.1)
    code = await asyncio.to_thread(worker.stop, 30)
    assert code == 0
    assert "shutting down" in worker.log()
    assert "Traceback" not in worker.log()


async def test_the_starter_cancels_a_running_job(stack: Stack):
    stack.write_input("in.jsonl", 40)
    stack.emulator.set_knobs(line_latency_seconds=0.2, batch_concurrency=1)
    env = {**os.environ, **stack.worker_env()}
    with stack.worker():
        handle = await start(stack, fast_job())
        await wait_for(handle, lambda p: p.batch_status == "in_progress")
        cancel = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "starter.py", "cancel", handle.id],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert cancel.returncode == 0, cancel.stderr
        result = await asyncio.wait_for(handle.result(), 60)
    assert result.status is JobStatus.CANCELLED
    assert result.batch_status == "cancelled"
    assert cancel.stdout.startswith(f"batch {result.batch_id} cancelled at the gateway; ")
    assert_each_request_exactly_once(stack, result, 40)
