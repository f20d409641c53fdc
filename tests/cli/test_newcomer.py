"""A newcomer's session with starter.py: what each command prints, and its exit code.

Real processes: the dev server, the emulator, worker.py and starter.py, as a
user runs them. Each test asserts the lines a person reads, including the
README's own example output, so the README cannot drift from the commands.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from cli import hints
from contracts.constants import LOCAL_STACK_FILE
from devstack.process import REPO_ROOT
from tests.cli.starter_process import StarterProcess
from tests.e2e.conftest import Stack

pytestmark = pytest.mark.e2e

FAST = ["--poll-seconds", "1", "--refresh-seconds", "0.2"]


async def starter(
    stack: Stack, *args: str, cwd: Path = REPO_ROOT
) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run,
        [
            sys.executable,
            "starter.py" if cwd == REPO_ROOT else str(REPO_ROOT / "starter.py"),
            *args,
        ],
        cwd=cwd,
        env={**os.environ, **stack.worker_env()},
        capture_output=True,
        text=True,
        timeout=180,
    )


def gateway_batches(stack: Stack) -> list[dict]:
    with httpx.Client(base_url=stack.emulator.base_url, timeout=10) as http:
        return list(http.get("/batches", params={"limit": 100}).json()["data"])


def readme_block(after: str) -> list[str]:
    """The lines of the first fenced block in README.md after the line holding ``after``."""
    text = (REPO_ROOT / "README.md").read_text()
    start = text.index(after)
    block = text[text.index("```\n", start) + 4 :]
    return block[: block.index("```")].splitlines()


def normalised(lines: list[str]) -> list[str]:
    """Lines with what differs between runs (ids, times) replaced by placeholders."""
    patterns = [
        (r"batch_[0-9a-f]{8,}", "batch_ID"),
        (r"took:     .*", "took:     TIME"),
        (r"/workflows/\S+", "/workflows/WORKFLOW_ID"),
    ]
    out = []
    for line in lines:
        for pattern, placeholder in patterns:
            line = re.sub(pattern, placeholder, line)
        out.append(line)
    return out


async def test_the_readme_example_output_is_what_the_demo_run_prints(stack: Stack):
    """make demo's run (scripts/stack.py): the bar ends finished, then the README's summary."""
    shutil.copy(REPO_ROOT / "examples" / "batch.jsonl", stack.data_dir / "batch.jsonl")
    with stack.worker():
        done = await starter(
            stack,
            "run",
            "batch.jsonl",
            "--output=batched-response.jsonl",
            "--errors=batched-errors.jsonl",
            "--poll-seconds=1",
            cwd=stack.data_dir,
        )
    assert done.returncode == 0, done.stderr
    bar = done.stderr.splitlines()[-1]
    shown = normalised([bar, *done.stdout.splitlines()])
    assert shown == normalised(readme_block("prints a summary, and stops what it started:"))
    took = done.stdout.splitlines()[-2]
    assert re.fullmatch(r"took:     (\d\.\d s|\d+ s|\d+ min \d+ s)", took), took


async def test_status_and_result_of_a_failed_job_say_why_and_exit_1(stack: Stack):
    lines = [
        {"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": {"model": "m"}},
        {"method": "POST", "url": "/v1/chat/completions", "body": {"model": "m"}},
    ]
    (stack.data_dir / "bad.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    bad = str(stack.data_dir / "bad.jsonl")
    with stack.worker():
        ran = await starter(stack, "run", bad, "--id", "failing", *FAST)
        status = await starter(stack, "status", "failing")
        result = await starter(stack, "result", "failing")
    why = "bad.jsonl:2: field 'custom_id': missing or not a non-empty string; give each request one"
    assert ran.returncode == 1
    assert why in ran.stderr
    assert status.returncode == 1, status.stdout
    assert status.stdout.splitlines()[0] == "workflow: failing (FAILED)"
    assert "job failing failed: " in status.stdout
    assert why in status.stdout
    assert result.returncode == 1
    assert why in result.stderr


async def test_an_unknown_id_or_a_batch_id_gets_one_line_of_guidance_and_exit_2(stack: Stack):
    listing = hints.starter("list")
    for command in ("status", "result", "cancel"):
        unknown = await starter(stack, command, "no-such-job")
        batch = await starter(stack, command, "batch_751f0c2d9e8a4b3c")
        assert unknown.returncode == 2
        assert unknown.stderr.splitlines() == [
            f"starter: no job with workflow id no-such-job; {listing} shows the jobs and their ids"
        ]
        assert batch.returncode == 2
        assert batch.stderr.splitlines() == [
            "starter: batch_751f0c2d9e8a4b3c looks like a gateway batch id, not a workflow id; "
            f"{listing} shows each job's workflow id beside its batch id"
        ]


async def test_result_with_no_worker_says_it_waits_for_one(stack: Stack):
    stack.write_input("in.jsonl", 3)
    started = await starter(stack, "start", str(stack.data_dir / "in.jsonl"), "--id", "idle")
    assert started.returncode == 0, started.stderr
    waiting = StarterProcess(stack.logs, stack.worker_env(), "result", "idle")
    try:
        said = await waiting.stderr_shows("waiting for a worker", within=30)
        waiting.interrupt()
        code = await waiting.exit_code(within=30)
    finally:
        waiting.kill()
    assert said.splitlines()[0] == (
        f"waiting for a worker on task queue {stack.task_queue!r}: none is polling "
        f"({hints.worker()}); the job, and this wait, go on once one runs it "
        "(no batch recorded yet)"
    )
    assert code == 130
    assert (
        waiting.stderr()
        .splitlines()[-1]
        .endswith(
            f"job idle keeps running: run the same command again to follow it, or "
            f"{hints.starter('status', 'idle')}"
        )
    )
    await stack.client.get_workflow_handle("idle").terminate("test over")


async def test_list_shows_one_row_per_job_with_its_runs_and_both_statuses(stack: Stack):
    stack.write_input("in.jsonl", 2)
    (stack.data_dir / "bad.jsonl").write_text('{"custom_id": "x"}\n')
    job = f"twice-{uuid.uuid4().hex[:6]}"
    broken = f"broken-{uuid.uuid4().hex[:6]}"
    with stack.worker():
        for _ in range(2):
            ran = await starter(stack, "run", str(stack.data_dir / "in.jsonl"), "--id", job, *FAST)
            assert ran.returncode == 0, ran.stderr
        failed = await starter(stack, "run", str(stack.data_dir / "bad.jsonl"), "--id", broken)
        assert failed.returncode == 1
    listed = await starter(stack, "list", "--limit", "500")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].split() == [
        "WORKFLOW",
        "ID",
        "RUNS",
        "JOB",
        "BATCH",
        "BATCH",
        "ID",
        "STARTED",
        "(UTC)",
    ]
    [twice] = [line.split() for line in lines if line.startswith(job)]
    [broken_row] = [line.split() for line in lines if line.startswith(broken)]
    assert twice[1:4] == ["2", "completed", "completed"]
    assert twice[4].startswith("batch_")
    assert broken_row[1:5] == ["1", "failed", "-", "-"]
    assert "JOB: the workflow's state" in listed.stderr


async def test_schedule_list_shows_how_the_last_run_ended(stack: Stack):
    stack.write_input("in.jsonl", 2)
    name = f"nightly-{uuid.uuid4().hex[:6]}"
    file = str(stack.data_dir / "in.jsonl")
    with stack.worker():
        created = await starter(
            stack, "schedule", "create", name, file, "--every", "24h", *FAST[:2]
        )
        assert created.returncode == 0, created.stderr
        try:
            assert (await starter(stack, "schedule", "trigger", name)).returncode == 0
            for _ in range(600):
                listed = await starter(stack, "schedule", "list")
                [row] = [line for line in listed.stdout.splitlines() if line.startswith(name)]
                if row.endswith("(succeeded)"):
                    break
                await asyncio.sleep(0.5)
        finally:
            await starter(stack, "schedule", "delete", name)
    assert re.search(rf"last {name}-\S+ \(succeeded\)$", row), row


async def test_attach_has_its_own_id_and_says_when_its_arguments_look_swapped(stack: Stack):
    stack.write_input("in.jsonl", 5)
    # The operator lets jobs attach to any batch (docs/security.md), so the count is what refuses.
    with stack.worker(BATCH_ATTACH_ANY_BATCH="true"):
        ran = await starter(stack, "run", str(stack.data_dir / "in.jsonl"), *FAST)
        assert ran.returncode == 0, ran.stderr
        [batch] = gateway_batches(stack)
        swapped = await starter(stack, "attach", str(stack.data_dir / "in.jsonl"), batch["id"])
        (stack.data_dir / "three.jsonl").write_text(
            "".join((stack.data_dir / "in.jsonl").read_text().splitlines(keepends=True)[:3])
        )
        # The run deleted the batch's files at the gateway: the count still tells.
        three = await starter(stack, "attach", batch["id"], str(stack.data_dir / "three.jsonl"))
    run_id = next(line for line in ran.stderr.splitlines() if line.startswith("started "))
    assert run_id.startswith("started batch-in-")
    assert swapped.returncode == 2
    assert swapped.stderr.splitlines() == [
        f"starter: the arguments look swapped: {stack.data_dir / 'in.jsonl'} is a file and "
        f"{batch['id']} no file; attach takes the batch id first: "
        f"{hints.starter('attach', batch['id'], str(stack.data_dir / 'in.jsonl'))}"
    ]
    assert three.returncode == 1
    assert any(line.startswith("started attach-three-") for line in three.stderr.splitlines())
    assert (
        f"cannot attach three.jsonl to batch {batch['id']}: it runs 5 requests, three.jsonl "
        "holds 3" in three.stderr
    ), three.stderr
    assert "stay at the gateway" not in three.stderr


async def test_an_embeddings_file_runs_without_endpoint_from_its_lines_url(stack: Stack):
    path = stack.data_dir / "emb.jsonl"
    path.write_text(
        "".join(
            json.dumps(
                {
                    "custom_id": f"e{n}",
                    "method": "POST",
                    "url": "/v1/embeddings",
                    "body": {"model": "text-embedding-3-small", "input": f"item {n}"},
                }
            )
            + "\n"
            for n in range(3)
        )
    )
    with stack.worker():
        ran = await starter(stack, "run", str(path), *FAST)
    assert ran.returncode == 0, ran.stderr
    assert "endpoint: /v1/embeddings (every line's url; --endpoint sets it)" in ran.stderr
    assert "requests: 3 total, 3 succeeded" in ran.stdout


async def test_a_first_run_on_make_ups_stack_polls_fast_and_says_so(stack: Stack):
    marker = REPO_ROOT / LOCAL_STACK_FILE
    if marker.exists():
        pytest.skip(f"a `make up` stack runs in this checkout ({marker})")
    marker.parent.mkdir(exist_ok=True)
    # What scripts/stack.py up writes (tests/devstack checks it does), aimed at this dev server.
    marker.write_text(
        json.dumps({"pid": os.getpid(), "temporal_address": stack.address, "poll_seconds": 1.0})
    )
    try:
        stack.write_input("in.jsonl", 5)
        with stack.worker():
            ran = await starter(stack, "run", str(stack.data_dir / "in.jsonl"))
    finally:
        marker.unlink()
    assert ran.returncode == 0, ran.stderr
    assert (
        "polling every 1 s: the local stack (make up) runs the gateway emulator "
        "(--poll-seconds sets it)"
    ) in ran.stderr.splitlines()
    took = next(line for line in ran.stdout.splitlines() if line.startswith("took:"))
    # At the default 60 s poll the batch (about 2 s at this emulator) would take a minute.
    assert re.fullmatch(r"took:     (\d\.\d|[1-2]\d) s", took), took
