"""A sharded job is one job per results location, like a one-batch job.

Real processes: the dev server, the emulator, worker.py and starter.py. What a
user checks: one parent workflow, each shard's batch made once, every request
run to success by exactly one batch, and what each command printed.
"""

from __future__ import annotations

import asyncio

import pytest

from cli.job_ids import default_workflow_id
from tests.cli.starter_process import StarterProcess
from tests.cli.test_rerun_attach_cancel import (
    FAST,
    gateway_batches,
    runs_of,
    starter,
    starter_now,
)
from tests.e2e.conftest import Stack

pytestmark = pytest.mark.e2e

REQUESTS, PER_BATCH = 60, 20
SHARDED = ["--max-batch-requests", str(PER_BATCH)]


async def until_batches(stack: Stack, count: int) -> None:
    for _ in range(600):
        if len(gateway_batches(stack)) >= count:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"the gateway never had {count} batches: {gateway_batches(stack)}")


async def test_the_same_sharded_command_twice_makes_each_batch_once(stack: Stack) -> None:
    stack.write_input("in.jsonl", REQUESTS)
    stack.write_input("other.jsonl", 3)
    # The batches validate until the test lets them go: the first job surely still runs.
    stack.emulator.set_knobs(validating_seconds=600)
    source = str(stack.data_dir / "in.jsonl")
    run = ["run", source, *SHARDED, *FAST, "--refresh-seconds", "0.2"]
    with stack.worker():
        first = starter(stack, "first", *run)
        second: StarterProcess | None = None
        try:
            await first.stderr_shows("started ")
            [workflow_id] = [
                line.split()[1]
                for line in first.stderr().splitlines()
                if line.startswith("started")
            ]
            assert workflow_id == default_workflow_id("in.output.jsonl", stack.task_queue)
            await until_batches(stack, REQUESTS // PER_BATCH)

            second = starter(stack, "second", *run)
            await second.stderr_shows(f"already running as {workflow_id}; following it")
            started = starter_now(stack, "start", source, *SHARDED, *FAST)
            other_job = starter_now(
                stack,
                "start",
                str(stack.data_dir / "other.jsonl"),
                "--output",
                str(stack.data_dir / "in.output.jsonl"),
                *SHARDED,
            )
            one_batch = starter_now(stack, "start", source)
            own_id = starter_now(
                stack,
                "start",
                source,
                *SHARDED,
                "--id",
                "in-again",
                "--output",
                str(stack.data_dir / "again.output.jsonl"),
            )

            stack.emulator.set_knobs(validating_seconds=0.5)
            codes = (await first.exit_code(180), await second.exit_code(180))
        finally:
            first.kill()
            if second is not None:
                second.kill()
        assert codes == (0, 0), first.stderr() + (second.stderr() if second else "")
        for follower in (first, second):
            assert f"requests: {REQUESTS} total, {REQUESTS} succeeded, 0 failed" in (
                follower.stdout()
            )
        assert "started" not in second.stderr()

        assert started.returncode == 0, started.stderr
        assert started.stdout.strip() == workflow_id
        assert f"already running as {workflow_id}" in started.stderr

        for refused, why in (
            (other_job, "but it runs in.jsonl, not other.jsonl"),
            (one_batch, "but it runs sharded with"),
        ):
            assert refused.returncode == 2, refused.stderr
            assert refused.stderr.startswith(
                f"starter: workflow {workflow_id} is already running and writes "
            ), refused.stderr
            assert why in refused.stderr
            assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr

        # --id names the job: its own workflow, its own batches.
        assert own_id.returncode == 0, own_id.stderr
        assert own_id.stdout.strip() == "in-again"
        await asyncio.wait_for(stack.client.get_workflow_handle("in-again").result(), timeout=180)

    assert len(await runs_of(stack, workflow_id)) == 1, "one parent workflow"
    ids = {f"req-{i}" for i in range(REQUESTS)}
    first_job_batches = REQUESTS // PER_BATCH
    assert len(gateway_batches(stack)) == 2 * first_job_batches, "3 for the job, 3 for --id"
    assert stack.emulator.successes_by_custom_id("req-") == dict.fromkeys(sorted(ids), 2), (
        "each request ran once for the job and once for the job under --id, never more"
    )
