"""{workflow_id} in output_path / errors_path: each run (of a schedule) writes its own files."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from temporalio.worker import Worker

from contracts.job import BatchJobInput, expand_workflow_id
from devstack.scripted import ScriptedBatch
from workflows.batch_job import BatchJobWorkflow


def scheduled_job() -> BatchJobInput:
    return BatchJobInput(
        input_path="nightly/in.jsonl",
        output_path="nightly/{workflow_id}.output.jsonl",
        errors_path="nightly/{workflow_id}.errors.jsonl",
        poll_interval=timedelta(minutes=10),
    )


async def test_two_runs_of_one_input_write_to_their_own_paths(time_skipping_env):
    script = ScriptedBatch()
    queue = f"test-{uuid.uuid4()}"
    # As a schedule names its runs: the schedule id and the scheduled time.
    ids = ["nightly-2026-01-01T00:00:00Z", "nightly-2026-01-02T00:00:00Z"]
    results = []
    async with Worker(
        time_skipping_env.client,
        task_queue=queue,
        workflows=[BatchJobWorkflow],
        activities=script.activities(),
    ):
        for workflow_id in ids:
            handle = await time_skipping_env.client.start_workflow(
                BatchJobWorkflow.run, scheduled_job(), id=workflow_id, task_queue=queue
            )
            results.append(await handle.result())

    assert [r.output_path for r in results] == [
        "nightly/nightly-2026-01-01T00_00_00Z.output.jsonl",
        "nightly/nightly-2026-01-02T00_00_00Z.output.jsonl",
    ]
    assert [r.errors_path for r in results] == [
        "nightly/nightly-2026-01-01T00_00_00Z.errors.jsonl",
        "nightly/nightly-2026-01-02T00_00_00Z.errors.jsonl",
    ]
    # The activities were told the filled-in paths, before anything was sent.
    validated = script.called("validate_input")
    assert [v.output_path for v in validated] == [r.output_path for r in results]
    collected = script.called("collect_results")
    assert [c.errors_path for c in collected] == [r.errors_path for r in results]


@pytest.mark.parametrize(
    ("workflow_id", "expected"),
    [
        ("a/../../etc", "out/a_.._.._etc.jsonl"),
        ("..", "out/_.jsonl"),
        ("plain-id_1.2", "out/plain-id_1.2.jsonl"),
    ],
)
def test_a_workflow_id_cannot_leave_the_folder(workflow_id: str, expected: str):
    assert expand_workflow_id("out/{workflow_id}.jsonl", workflow_id) == expected


def test_paths_without_the_placeholder_are_unchanged():
    job = BatchJobInput(input_path="in.jsonl")
    assert job.output_paths_for("any/id") == ("in.output.jsonl", "in.errors.jsonl")
