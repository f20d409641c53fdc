"""Schedules through the starter CLI, on the real dev server, emulator and a worker process.

A run of a schedule writes its results at its own path ({workflow_id}); the overlap
policy decides what a trigger does while a run is still going.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from temporalio.client import (
    Client,
    ScheduleActionExecutionStartWorkflow,
    ScheduleDescription,
    ScheduleOverlapPolicy,
)
from temporalio.service import RPCError, RPCStatusCode

from contracts.job import BatchJobResult, JobStatus
from devstack.process import REPO_ROOT
from tests.e2e.conftest import Stack

pytestmark = pytest.mark.e2e


def ids_in(path: Path) -> list[str]:
    return sorted(json.loads(line)["custom_id"] for line in path.read_text().splitlines() if line)


async def cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "starter.py", *args],
        cwd=REPO_ROOT,
        env={**os.environ, **stack.worker_env()},
        capture_output=True,
        text=True,
        timeout=60,
    )


async def ok(stack: Stack, *args: str) -> str:
    done = await cli(stack, *args)
    assert done.returncode == 0, f"starter {' '.join(args)}: {done.stderr}"
    return done.stdout


async def described_when(
    client: Client, name: str, predicate, within: float = 30
) -> ScheduleDescription:
    deadline = time.monotonic() + within
    while True:
        described = await client.get_schedule_handle(name).describe()
        if predicate(described) or time.monotonic() > deadline:
            return described
        await asyncio.sleep(0.2)


async def results_of(client: Client, described: ScheduleDescription) -> list[BatchJobResult]:
    runs = [r.action for r in described.info.recent_actions]
    assert all(isinstance(r, ScheduleActionExecutionStartWorkflow) for r in runs)
    return [
        await asyncio.wait_for(
            client.get_workflow_handle(
                r.workflow_id, run_id=r.first_execution_run_id, result_type=BatchJobResult
            ).result(),
            60,
        )
        for r in runs
        if isinstance(r, ScheduleActionExecutionStartWorkflow)
    ]


async def test_a_scheduled_job_runs_at_its_own_path_and_skips_overlaps(stack: Stack):
    stack.write_input("in.jsonl", 6)
    # Long enough that a second trigger lands while the first run is still going.
    stack.emulator.set_knobs(validating_seconds=4)
    name = f"nightly-{uuid.uuid4().hex[:6]}"
    with stack.worker():
        created = await ok(
            stack, "schedule", "create", name, str(stack.data_dir / "in.jsonl"),
            "--every", "30m", "--poll-seconds", "1", "--metadata", "team=catalog",
        )  # fmt: skip
        assert "overlap skip" in created
        assert "results: in.{workflow_id}.output.jsonl" in created

        await ok(stack, "schedule", "trigger", name)
        await asyncio.sleep(1.2)  # a later second: a run's id is the schedule's plus the time
        await ok(stack, "schedule", "trigger", name)
        described = await described_when(
            stack.client,
            name,
            lambda d: d.info.num_actions_skipped_overlap >= 1 and d.info.recent_actions,
        )
        assert described.schedule.policy.overlap is ScheduleOverlapPolicy.SKIP
        assert described.info.num_actions == 1
        assert described.info.num_actions_skipped_overlap == 1
        [result] = await results_of(stack.client, described)

    assert result.status is JobStatus.SUCCEEDED
    run_id = described.info.recent_actions[0].action
    assert isinstance(run_id, ScheduleActionExecutionStartWorkflow)
    assert run_id.workflow_id.startswith(name + "-")
    safe = run_id.workflow_id.replace(":", "_")
    assert result.output_path == f"in.{safe}.output.jsonl"
    assert result.errors_path == f"in.{safe}.errors.jsonl"
    assert ids_in(stack.data_dir / result.output_path) == [f"req-{i}" for i in range(6)]
    assert not (stack.data_dir / "in.output.jsonl").exists()

    listing = await ok(stack, "schedule", "list")
    [row] = [line for line in listing.splitlines() if line.startswith(name)]
    assert "active" in row and "every 30m" in row and "overlap skip" in row
    assert run_id.workflow_id in row

    await ok(stack, "schedule", "pause", name, "--note", "gateway maintenance")
    paused = await stack.client.get_schedule_handle(name).describe()
    assert paused.schedule.state.paused
    assert paused.schedule.state.note == "gateway maintenance"
    listing = await ok(stack, "schedule", "list")
    assert any(line.startswith(name) and "paused" in line for line in listing.splitlines())
    assert "note: gateway maintenance" in listing

    await ok(stack, "schedule", "unpause", name)
    assert not (await stack.client.get_schedule_handle(name).describe()).schedule.state.paused

    await ok(stack, "schedule", "delete", name)
    with pytest.raises(RPCError) as gone:
        await stack.client.get_schedule_handle(name).describe()
    assert gone.value.status == RPCStatusCode.NOT_FOUND
    missing = await cli(stack, "schedule", "trigger", name)
    assert missing.returncode == 2 and f"no schedule {name!r}" in missing.stderr


async def test_allow_all_runs_overlap_each_into_its_own_files(stack: Stack):
    stack.write_input("in.jsonl", 4)
    stack.emulator.set_knobs(validating_seconds=4)
    name = f"hourly-{uuid.uuid4().hex[:6]}"
    with stack.worker():
        await ok(
            stack, "schedule", "create", name, str(stack.data_dir / "in.jsonl"),
            "--cron", "0 3 * * *", "--overlap", "allow-all", "--poll-seconds", "1",
            "--output", str(stack.data_dir / "out" / "{workflow_id}.jsonl"),
            "--errors", str(stack.data_dir / "out" / "{workflow_id}.errors.jsonl"),
        )  # fmt: skip
        await ok(stack, "schedule", "trigger", name)
        await asyncio.sleep(1.2)
        await ok(stack, "schedule", "trigger", name)
        described = await described_when(
            stack.client, name, lambda d: len(d.info.recent_actions) >= 2
        )
        assert described.schedule.policy.overlap is ScheduleOverlapPolicy.ALLOW_ALL
        assert described.info.num_actions == 2
        assert described.info.num_actions_skipped_overlap == 0
        first, second = await results_of(stack.client, described)
        await ok(stack, "schedule", "delete", name)

    # They ran at the same time, and neither overwrote the other.
    assert second.started_at < first.finished_at
    assert first.output_path != second.output_path
    for result in (first, second):
        assert result.status is JobStatus.SUCCEEDED
        assert result.output_path.startswith("out/" + name + "-")
        assert ids_in(stack.data_dir / result.output_path) == [f"req-{i}" for i in range(4)]


async def test_a_fixed_results_path_is_refused_for_a_schedule(stack: Stack):
    stack.write_input("in.jsonl", 1)
    refused = await cli(
        stack, "schedule", "create", "fixed", str(stack.data_dir / "in.jsonl"),
        "--every", "24h", "--output", str(stack.data_dir / "out.jsonl"),
    )  # fmt: skip
    assert refused.returncode == 2
    assert "would overwrite" in refused.stderr and "{workflow_id}" in refused.stderr
    with pytest.raises(RPCError):
        await stack.client.get_schedule_handle("fixed").describe()
