"""Where a job may read and write is the operator's choice: the worker's allow-list, end to end.

Real processes: the dev server, the emulator and worker.py with
BATCH_ALLOWED_LOCATIONS set. What an operator checks: the job's one-line
failure naming the location and the setting, nothing written, nothing paid.
"""

from __future__ import annotations

import asyncio

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError

from contracts.job import BatchJobResult
from contracts.names import FAILURE_INVALID_LOCATION, WORKFLOW_NAME
from tests.e2e.conftest import Stack
from tests.e2e.helpers import fast_job, start

pytestmark = pytest.mark.e2e


async def test_a_location_outside_the_allow_list_is_refused_at_the_start(stack: Stack):
    (stack.data_dir / "team-a").mkdir()
    (stack.data_dir / "team-b").mkdir()
    stack.write_input("team-a/in.jsonl", 3)
    stack.write_input("team-b/in.jsonl", 3)
    before = stack.emulator.stats()["api_requests"]

    with stack.worker(BATCH_ALLOWED_LOCATIONS="team-a"):
        own = await start(stack, fast_job(input_path="team-a/in.jsonl"))
        result = await asyncio.wait_for(own.result(), 60)
        assert result.requests.succeeded == 3

        # Reading another team's input, and writing over another team's folder.
        for job in (
            fast_job(input_path="team-b/in.jsonl", output_path="team-a/b.out.jsonl"),
            fast_job(input_path="team-a/in.jsonl", output_path="team-b/in.output.jsonl"),
        ):
            handle = await start(stack, job)
            with pytest.raises(WorkflowFailureError) as caught:
                await asyncio.wait_for(handle.result(), 60)
            cause = caught.value.cause
            while cause is not None and not isinstance(cause, ApplicationError):
                cause = cause.cause
            assert isinstance(cause, ApplicationError)
            assert cause.type == FAILURE_INVALID_LOCATION
            assert cause.message.startswith("team-b/")
            assert "not a location this worker lets jobs use" in cause.message
            assert "(BATCH_ALLOWED_LOCATIONS: team-a)" in cause.message
            assert "\n" not in cause.message

    assert sorted(p.name for p in (stack.data_dir / "team-b").iterdir()) == ["in.jsonl"]
    calls = stack.emulator.stats()["api_calls"]
    assert calls.get("POST /files") == 1 and calls.get("POST /batches") == 1, "only team-a's job"
    assert stack.emulator.stats()["api_requests"] > before


async def test_results_are_written_create_only_unless_the_job_asks_or_reruns(stack: Stack):
    stack.write_input("in.jsonl", 3)
    theirs = stack.data_dir / "report.jsonl"
    theirs.write_text("another team's report\n")

    with stack.worker():
        refused = await start(stack, fast_job(output_path="report.jsonl"))
        with pytest.raises(WorkflowFailureError) as caught:
            await asyncio.wait_for(refused.result(), 60)
        cause = caught.value.cause
        while cause is not None and not isinstance(cause, ApplicationError):
            cause = cause.cause
        assert isinstance(cause, ApplicationError)
        assert cause.type == FAILURE_INVALID_LOCATION
        assert cause.message.startswith("report.jsonl: results are already there")
        assert "replace_results" in cause.message and "\n" not in cause.message
        assert theirs.read_text() == "another team's report\n"
        assert stack.emulator.stats()["api_calls"].get("POST /files") is None, "nothing paid"

        # The same job run again (one workflow id) writes over its own results.
        for _ in range(2):
            handle = await stack.client.start_workflow(
                WORKFLOW_NAME,
                fast_job(output_path="mine.jsonl"),
                id="create-only-rerun",
                task_queue=stack.task_queue,
                result_type=BatchJobResult,
            )
            assert (await asyncio.wait_for(handle.result(), 60)).requests.succeeded == 3

        replaced = await start(stack, fast_job(output_path="report.jsonl", replace_results=True))
        assert (await asyncio.wait_for(replaced.result(), 60)).requests.succeeded == 3
    assert len(theirs.read_text().splitlines()) == 3
