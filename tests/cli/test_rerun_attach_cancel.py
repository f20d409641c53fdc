"""Running a command twice, attaching to a batch, cancelling: what starter.py says and does.

Real processes: the dev server, the emulator, worker.py and starter.py. What a
user checks: how many jobs and batches there are, what each command printed,
and what is in the results files.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys

import httpx
import pytest
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import is_cancelled_exception

from cli.exits import UsageError
from cli.job_ids import MEMO_KEY, JobIdentity, start_or_use_existing
from contracts.job import BatchJobInput
from devstack.process import REPO_ROOT
from tests.cli.starter_process import StarterProcess
from tests.e2e.conftest import Stack

pytestmark = pytest.mark.e2e

FAST = ["--poll-seconds", "1"]


def gateway_batches(stack: Stack) -> list[dict]:
    with httpx.Client(base_url=stack.emulator.base_url, timeout=10) as http:
        return list(http.get("/batches", params={"limit": 100}).json()["data"])


def starter(stack: Stack, name: str, *args: str) -> StarterProcess:
    return StarterProcess(stack.logs / name, stack.worker_env(), *args)


def starter_now(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "starter.py", *args],
        cwd=REPO_ROOT,
        env={**os.environ, **stack.worker_env()},
        capture_output=True,
        text=True,
        timeout=120,
    )


async def runs_of(stack: Stack, workflow_id: str) -> list[str]:
    return [
        execution.run_id
        async for execution in stack.client.list_workflows(f"WorkflowId = '{workflow_id}'")
    ]


async def test_start_uses_the_running_job_refuses_another_and_starts_anew_once_it_closed(
    stack: Stack,
):
    """The policies themselves, with no worker: the job just sits there, running."""
    job = BatchJobInput(input_path="in.jsonl")
    same = JobIdentity(input_path="in.jsonl", input_sha256="a" * 64, endpoint=job.endpoint)
    start = {"workflow_id": "policies", "task_queue": stack.task_queue}

    first = await start_or_use_existing(stack.client, job, same, **start)
    again = await start_or_use_existing(stack.client, job, same, **start)
    assert (first.started, again.started) == (True, False)
    assert again.handle.result_run_id == first.handle.result_run_id

    edited = same.model_copy(update={"input_sha256": "b" * 64})
    with pytest.raises(UsageError, match="workflow policies is already running and writes"):
        await start_or_use_existing(stack.client, job, edited, **start)

    await first.handle.terminate("test")
    after = await start_or_use_existing(stack.client, job, edited, **start)
    assert after.started
    assert after.handle.result_run_id != first.handle.result_run_id
    await after.handle.terminate("test")


async def test_running_the_same_command_twice_runs_one_job_and_one_batch(stack: Stack):
    stack.write_input("in.jsonl", 20)
    stack.write_input("other.jsonl", 3)
    # The batch validates until the test lets it go: the first job is surely still running.
    stack.emulator.set_knobs(validating_seconds=600)
    run = ["run", str(stack.data_dir / "in.jsonl"), *FAST, "--refresh-seconds", "0.2"]
    with stack.worker():
        first = starter(stack, "first", *run)
        second: StarterProcess | None = None
        try:
            await first.stderr_shows("· validating")
            [workflow_id] = [
                line.split()[1]
                for line in first.stderr().splitlines()
                if line.startswith("started")
            ]
            second = starter(stack, "second", *run)
            await second.stderr_shows(f"already running as {workflow_id}; following it")

            clash = starter_now(
                stack,
                "start",
                str(stack.data_dir / "other.jsonl"),
                "--output",
                str(stack.data_dir / "in.output.jsonl"),
            )
            stack.emulator.set_knobs(validating_seconds=0.5)
            codes = (await first.exit_code(), await second.exit_code())
        finally:
            first.kill()
            if second is not None:
                second.kill()
        assert codes == (0, 0), first.stderr() + second.stderr()
        for follower in (first, second):
            assert "20 total, 20 succeeded" in follower.stdout()
        assert "started" not in second.stderr()
        assert clash.returncode == 2
        assert clash.stderr.startswith(
            f"starter: workflow {workflow_id} is already running and writes in.output.jsonl, "
            "but it runs in.jsonl, not other.jsonl"
        ), clash.stderr
        assert len(await runs_of(stack, workflow_id)) == 1
        assert len(gateway_batches(stack)) == 1

        again = starter_now(stack, *run)
    assert again.returncode == 0, again.stderr
    assert f"started {workflow_id}" in again.stderr
    assert len(await runs_of(stack, workflow_id)) == 2, "a run after the first ended is new"
    assert len(gateway_batches(stack)) == 2


def file_status(stack: Stack, file_id: str) -> int:
    with httpx.Client(base_url=stack.emulator.base_url, timeout=10) as http:
        return http.get(f"/files/{file_id}").status_code


def batch_made_by_hand(stack: Stack, name: str) -> str:
    """POST /files and POST /batches, as the how-to does with curl."""
    with httpx.Client(base_url=stack.emulator.base_url, timeout=10) as http:
        uploaded = http.post(
            "/files",
            data={"purpose": "batch"},
            files={"file": (name, (stack.data_dir / name).read_bytes())},
        )
        uploaded.raise_for_status()
        made = http.post(
            "/batches",
            json={
                "input_file_id": uploaded.json()["id"],
                "endpoint": "/v1/chat/completions",
                "completion_window": "24h",
            },
        )
        made.raise_for_status()
        return str(made.json()["id"])


async def test_attach_collects_a_batch_made_at_the_gateway_by_hand(stack: Stack):
    stack.write_input("in.jsonl", 12)
    batch_id = batch_made_by_hand(stack, "in.jsonl")
    with stack.worker("default"):
        # Not the job's (no job key, an upload named by hand): another team's, as far
        # as the worker can tell. Refused before anything about the batch is said.
        foreign = starter_now(stack, "attach", batch_id, str(stack.data_dir / "in.jsonl"), *FAST)
    assert foreign.returncode == 1
    assert f"cannot attach in.jsonl to batch {batch_id}: it is not this job's" in foreign.stderr
    assert "BATCH_ATTACH_ANY_BATCH=true" in foreign.stderr
    assert not (stack.data_dir / "in.output.jsonl").exists()
    with stack.worker(BATCH_ATTACH_ANY_BATCH="true"):
        attached = starter_now(stack, "attach", batch_id, str(stack.data_dir / "in.jsonl"), *FAST)
        unknown = starter_now(stack, "attach", "batch_nope", str(stack.data_dir / "in.jsonl"))
    assert attached.returncode == 0, attached.stderr
    assert f"batch:    {batch_id} (completed)" in attached.stdout
    assert "12 total, 12 succeeded" in attached.stdout
    outputs = (stack.data_dir / "in.output.jsonl").read_text().splitlines()
    assert sorted(json.loads(line)["custom_id"] for line in outputs) == sorted(
        f"req-{i}" for i in range(12)
    )
    assert [b["id"] for b in gateway_batches(stack)] == [batch_id], "no batch of its own"
    [batch] = gateway_batches(stack)
    assert file_status(stack, batch["input_file_id"]) == 200, "not its upload: never deleted"
    assert unknown.returncode == 1
    assert "cannot attach in.jsonl to batch batch_nope: the gateway has no such batch" in (
        unknown.stderr
    )


async def started_job(stack: Stack, *args: str) -> str:
    done = starter_now(stack, "start", str(stack.data_dir / "in.jsonl"), *FAST, *args)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


async def until_running_lines(stack: Stack) -> None:
    for _ in range(600):
        if any(b["request_counts"]["completed"] for b in gateway_batches(stack)):
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the batch never started running lines")


async def test_cancel_says_the_batch_was_cancelled_and_what_was_collected(stack: Stack):
    stack.write_input("in.jsonl", 40)
    stack.emulator.set_knobs(line_latency_seconds=0.5, batch_concurrency=1)
    with stack.worker():
        workflow_id = await started_job(stack)
        await until_running_lines(stack)
        cancelled = starter_now(stack, "cancel", workflow_id)
    assert cancelled.returncode == 0, cancelled.stderr
    [batch] = gateway_batches(stack)
    assert batch["status"] == "cancelled"
    done = (stack.data_dir / "in.output.jsonl").read_text().splitlines()
    assert 0 < len(done) < 40
    assert cancelled.stdout.startswith(
        f"batch {batch['id']} cancelled at the gateway; {len(done)} of 40 requests had finished "
        f"({len(done)} succeeded, 0 failed) and were collected into in.output.jsonl"
    ), cancelled.stdout
    status = starter_now(stack, "status", workflow_id)
    assert status.returncode == 3, "a cancelled job did not run every request"
    assert "\nstatus:   cancelled (" in status.stdout, status.stdout
    assert f"requests: 40 total, {len(done)} succeeded, 0 failed, {40 - len(done)} not run" in (
        status.stdout
    )


async def test_cancel_never_claims_a_batch_the_gateway_would_not_cancel(stack: Stack):
    stack.write_input("in.jsonl", 10)
    # No cancel route, and the batch validates until the cancel has been asked for.
    stack.emulator.set_knobs(validating_seconds=600, unsupported_routes=["cancel_batch"])
    with stack.worker():
        workflow_id = await started_job(stack)
        for _ in range(600):
            if gateway_batches(stack):
                break
            await asyncio.sleep(0.1)
        cancel = starter(stack, "cancel", "cancel", workflow_id)
        try:
            await cancel.stderr_shows("waiting up to 60s for the gateway to settle")
            stack.emulator.set_knobs(validating_seconds=0.5)
            code = await cancel.exit_code()
        finally:
            cancel.kill()
    assert code == 0, cancel.stderr()
    [batch] = gateway_batches(stack)
    assert batch["status"] == "completed"
    assert cancel.stdout().startswith(
        f"the gateway did not cancel batch {batch['id']}: it ran to completion; "
        "10 of 10 requests had finished"
    ), cancel.stdout()


async def test_with_no_worker_cancel_and_status_say_what_is_known(stack: Stack):
    stack.write_input("in.jsonl", 3)
    workflow_id = await started_job(stack)
    status = starter_now(stack, "status", workflow_id)
    assert status.returncode == 0, status.stderr
    assert "progress: no worker answered within 5s" in status.stdout
    assert "no batch recorded yet" in status.stdout

    cancelled = starter_now(stack, "cancel", workflow_id)
    assert cancelled.returncode == 4
    assert f"no worker is polling task queue '{stack.task_queue}'" in cancelled.stdout
    assert "cancelled at" not in cancelled.stdout

    with stack.worker():
        with pytest.raises(WorkflowFailureError) as failure:
            await asyncio.wait_for(stack.client.get_workflow_handle(workflow_id).result(), 60)
        ended = starter_now(stack, "cancel", workflow_id)
    assert is_cancelled_exception(failure.value.cause)
    assert ended.returncode == 0
    assert ended.stdout.startswith(
        f"job {workflow_id} had already ended: job {workflow_id} cancelled before it made a "
        "batch: nothing was sent to run"
    ), ended.stdout
    assert gateway_batches(stack) == []


async def test_a_cancel_during_the_create_says_what_the_gateway_answered(stack: Stack):
    stack.write_input("in.jsonl", 10)
    # Every answer held back 3 s: the batch exists while its create is still unanswered.
    stack.emulator.set_knobs(response_delay_seconds=3.0, validating_seconds=120.0)
    with stack.worker():
        workflow_id = await started_job(stack)
        for _ in range(1200):
            if sum(stack.emulator.stats()["batches_by_status"].values()):
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the create never reached the gateway")
        cancelled = starter_now(stack, "cancel", workflow_id)
    stack.emulator.set_knobs(response_delay_seconds=0.0)
    [batch] = gateway_batches(stack)
    assert cancelled.returncode == 0, cancelled.stderr
    assert cancelled.stdout.startswith(
        f"job {workflow_id} cancelled while its batch was being made; the gateway took the "
        f"cancel of batch {batch['id']} (it is cancelling); nothing was collected"
    ), cancelled.stdout
    assert batch["status"] in ("cancelling", "cancelled")


async def test_attach_start_returns_the_workflow_id_and_a_rerun_the_same_one(stack: Stack):
    stack.write_input("in.jsonl", 3)
    attach = ("attach", "batch_by_hand", str(stack.data_dir / "in.jsonl"), "--start")
    first = starter_now(stack, *attach, "--metadata", "team=x")
    again = starter_now(stack, *attach)
    assert (first.returncode, again.returncode) == (0, 0), first.stderr + again.stderr
    workflow_id = first.stdout.strip()
    assert again.stdout.strip() == workflow_id
    assert "note: --metadata has no effect here" in first.stderr
    assert f"already running as {workflow_id}" in again.stderr
    description = await stack.client.get_workflow_handle(workflow_id).describe()
    identity = await description.memo_value(MEMO_KEY, type_hint=JobIdentity)
    assert identity.batch_id == "batch_by_hand"
    await stack.client.get_workflow_handle(workflow_id).terminate("test")


async def test_cancel_that_runs_out_of_time_says_the_batch_is_still_cancelling(stack: Stack):
    stack.write_input("in.jsonl", 20)
    # The gateway takes the cancel and then holds the batch in cancelling until released.
    stack.emulator.set_knobs(line_latency_seconds=0.5, batch_concurrency=1, cancelling_seconds=600)
    with stack.worker():
        workflow_id = await started_job(stack)
        await until_running_lines(stack)
        pending = starter_now(stack, "cancel", workflow_id, "--wait-seconds", "3")
        stack.emulator.set_knobs(cancelling_seconds=0.5)
        settled = starter_now(stack, "cancel", workflow_id)
    assert pending.returncode == 4, pending.stderr
    assert pending.stdout.startswith(
        f"cancel requested for {workflow_id}; after 3s the job has not"
    )
    assert "cancelling" in pending.stdout
    assert "cancelled at the gateway" not in pending.stdout
    [batch] = gateway_batches(stack)
    assert batch["status"] == "cancelled"
    assert settled.returncode == 0, settled.stderr
    # The job may have ended before the second cancel: either way the same line.
    assert f"batch {batch['id']} cancelled at the gateway; " in settled.stdout
