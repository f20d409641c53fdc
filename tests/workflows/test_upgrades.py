"""A deploy mid-job: the next release takes over a waiting job and finishes it; a step
result an older worker cannot read fails its workflow task, never the job; a caller's
typo is refused at the start, naming the field.

The takeover runs on a real dev server: the time-skipping test server hands a task to
the long poll of a worker that has stopped, and loses it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from temporalio import activity
from temporalio.api.enums.v1 import EventType
from temporalio.client import (
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowHistory,
)
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer, Worker
from temporalio.workflow import NondeterminismError

from contracts.job import JobStatus
from contracts.names import FAILURE_INVALID_JOB
from contracts.steps import BatchSnapshot
from devstack.scripted import ScriptedBatch
from devstack.temporal import start_dev_server, start_time_skipping
from tests.workflows.next_release import (
    NEXT_RELEASE_OPTION,
    PATCH_SETTLE_AFTER_UPLOAD,
    NextBatchJobWorkflow,
    NextReleaseParent,
    with_region,
)
from tests.workflows.test_batch_job_workflow import job
from workflows.batch_job import BatchJobWorkflow

REPLAY_HISTORIES = Path(__file__).parents[1] / "replay" / "histories"


async def _until_in_progress(handle: WorkflowHandle[Any, Any]) -> None:
    # Time stands still outside result(): the batch stays where it is.
    for _ in range(200):
        progress = await handle.query(BatchJobWorkflow.progress)
        if progress.batch_status == "in_progress":
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the job never reached in_progress")


def _patches(history: Any) -> list[str]:
    """The workflow.patched ids recorded in a history's markers."""
    found = []
    for event in history.events:
        if event.event_type == EventType.EVENT_TYPE_MARKER_RECORDED:
            details = event.marker_recorded_event_attributes.details
            found.append(json.loads(details["patch-data"].payloads[0].data)["id"])
    return found


@pytest_asyncio.fixture(scope="module")
async def dev_server() -> AsyncIterator[WorkflowEnvironment]:
    env = await start_dev_server()
    try:
        yield env
    finally:
        await env.shutdown()


async def test_the_next_release_takes_over_a_waiting_job_and_finishes_it(dev_server):
    env: WorkflowEnvironment = dev_server
    # In progress until this release's worker is gone; then a poll or two to the end.
    script = ScriptedBatch(path=[("in_progress", 10**6), ("finalizing", 0)])
    queue = f"upgrade-{uuid.uuid4()}"
    fast = job(poll_interval=timedelta(seconds=1))

    async with Worker(
        env.client, task_queue=queue, workflows=[BatchJobWorkflow], activities=script.activities()
    ):
        handle = await env.client.start_workflow(
            BatchJobWorkflow.run, fast, id=f"job-{uuid.uuid4()}", task_queue=queue
        )
        await _until_in_progress(handle)

    script.path = [("in_progress", 1), ("finalizing", 0)]
    async with Worker(
        env.client,
        task_queue=queue,
        workflows=[NextBatchJobWorkflow],
        activities=with_region(script.activities()),
    ):
        result = await asyncio.wait_for(handle.result(), 60)
        fresh = await env.client.start_workflow(
            BatchJobWorkflow.run, fast, id=f"job-{uuid.uuid4()}", task_queue=queue
        )
        assert (await asyncio.wait_for(fresh.result(), 60)).status is JobStatus.SUCCEEDED

    assert result.status is JobStatus.SUCCEEDED
    assert result.batch_status == "completed"
    history = await handle.fetch_history()
    results = [
        payload.data
        for event in history.events
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED
        for payload in event.activity_task_completed_event_attributes.result.payloads
    ]
    assert any(b'"region":"swedencentral"' in data for data in results), (
        "the next release's field reached the job"
    )
    assert PATCH_SETTLE_AFTER_UPLOAD not in _patches(history), "past its upload: the old path"
    assert PATCH_SETTLE_AFTER_UPLOAD in _patches(await fresh.fetch_history())
    # A rollback: this release's code replays the next release's history, new field and all.
    replayed = await Replayer(
        workflows=[BatchJobWorkflow], data_converter=pydantic_data_converter
    ).replay_workflow(history, raise_on_replay_failure=False)
    assert replayed.replay_failure is None, replayed.replay_failure


@pytest_asyncio.fixture
async def own_time_skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    """A server of its own: after a workflow task that keeps failing, the shared one
    no longer skipped time for the tests after it."""
    env = await start_time_skipping()
    try:
        yield env
    finally:
        await env.shutdown()


async def test_a_step_result_this_worker_cannot_read_fails_the_task_not_the_job(
    own_time_skipping_env: WorkflowEnvironment,
) -> None:
    env = own_time_skipping_env
    script = ScriptedBatch()
    queue = f"unreadable-{uuid.uuid4()}"

    async def create_batch(request: Any) -> dict[str, Any]:
        # A status this release does not know, as a later one might report it.
        return {**BatchSnapshot(id="batch_1", status="validating").model_dump(), "status": "paused"}

    activities = script.activities(activity.defn(name="create_batch")(create_batch))
    async with Worker(
        env.client, task_queue=queue, workflows=[BatchJobWorkflow], activities=activities
    ):
        handle = await env.client.start_workflow(
            BatchJobWorkflow.run, job(), id=f"job-{uuid.uuid4()}", task_queue=queue
        )
        for _ in range(100):
            history = await handle.fetch_history()
            kinds = [event.event_type for event in history.events]
            if EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED in kinds:
                break
            await asyncio.sleep(0.1)
        description = await handle.describe()
        if description.status is WorkflowExecutionStatus.RUNNING:
            await handle.terminate("test over")

    assert EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED in kinds
    assert EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED not in kinds
    assert description.status is WorkflowExecutionStatus.RUNNING, "waits for a worker that can"


@pytest.mark.parametrize(
    ("payload", "named"),
    [
        ({"input_path": "in.jsonl", "poll_intervall": "PT1M"}, "poll_intervall"),
        ({"input_path": "in.jsonl", "deadlines": {"in_progres": "PT30H"}}, "deadlines.in_progres"),
        ({"input_path": "in.jsonl", "poll_interval": "soon"}, "poll_interval"),
    ],
)
async def test_a_callers_typo_fails_the_job_at_once_naming_the_field(
    time_skipping_env, payload: dict[str, Any], named: str
):
    script = ScriptedBatch()
    async with script.serving(time_skipping_env) as start:
        handle = await start(payload, run="BatchJobWorkflow")
        with pytest.raises(WorkflowFailureError) as failure:
            await asyncio.wait_for(handle.result(), 20)
    cause = failure.value.cause
    assert isinstance(cause, ApplicationError)
    assert cause.type == FAILURE_INVALID_JOB
    assert cause.non_retryable
    assert f"{named}:" in cause.message
    assert script.calls == [], "nothing ran"


async def test_a_running_job_whose_input_this_release_does_not_know_waits_for_one_that_does():
    """A rollback below the release that added an input field: the job's tasks fail
    (non-determinism: this code would fail where the history went on), the job does not."""
    record = json.loads((REPLAY_HISTORIES / "attached.json").read_text())
    started = record["history"]["events"][0]["workflowExecutionStartedEventAttributes"]
    payload = started["input"]["payloads"][0]
    sent = json.loads(base64.b64decode(payload["data"]))
    unknown = {**sent, "next_release_option": 1}
    payload["data"] = base64.b64encode(json.dumps(unknown).encode()).decode()
    history = WorkflowHistory.from_json(record["workflow_id"], json.dumps(record["history"]))

    replayed = await Replayer(
        workflows=[BatchJobWorkflow], data_converter=pydantic_data_converter
    ).replay_workflow(history, raise_on_replay_failure=False)

    assert isinstance(replayed.replay_failure, NondeterminismError)


async def test_a_child_from_a_newer_parent_waits_on_an_older_worker_for_a_newer_one(dev_server):
    """A rolling deploy: a parent on the next release starts a child whose input has a
    field this release does not know. This release's worker fails the child's workflow
    task (retried), never the child; the next release's worker then runs it to the end."""
    env: WorkflowEnvironment = dev_server
    script = ScriptedBatch(path=[("in_progress", 1)])
    queue, parents = f"deploy-{uuid.uuid4()}", f"parents-{uuid.uuid4()}"
    child_id = f"job-{uuid.uuid4()}"
    order = {
        "job": job(poll_interval=timedelta(seconds=1)).model_dump(mode="json"),
        "child_id": child_id,
        "task_queue": queue,
    }
    async with Worker(env.client, task_queue=parents, workflows=[NextReleaseParent]):
        parent = await env.client.start_workflow(
            NextReleaseParent.run, order, id=f"parent-{uuid.uuid4()}", task_queue=parents
        )
        child = env.client.get_workflow_handle(child_id)
        async with Worker(
            env.client,
            task_queue=queue,
            workflows=[BatchJobWorkflow],
            activities=script.activities(),
        ):
            failed_task = None
            for _ in range(200):
                with contextlib.suppress(RPCError):
                    async for event in child.fetch_history_events():
                        if event.HasField("workflow_task_failed_event_attributes"):
                            failed_task = event.workflow_task_failed_event_attributes
                if failed_task is not None:
                    break
                await asyncio.sleep(0.05)
        assert failed_task is not None, "this release failed the child's workflow task"
        assert NEXT_RELEASE_OPTION in failed_task.failure.message
        assert (await child.describe()).status is WorkflowExecutionStatus.RUNNING
        assert (await parent.describe()).status is WorkflowExecutionStatus.RUNNING
        assert script.calls == [], "nothing ran on the older worker"

        async with Worker(
            env.client,
            task_queue=queue,
            workflows=[NextBatchJobWorkflow],
            activities=script.activities(),
        ):
            result = await asyncio.wait_for(parent.result(), 60)
    assert result.status is JobStatus.SUCCEEDED
    assert result.requests.succeeded > 0
