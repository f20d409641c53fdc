"""Record the histories the replay test checks new workflow code against.

    python -m tests.replay.capture            # the scenarios not captured yet
    python -m tests.replay.capture NAME...    # these, even if captured (overwrites)

A captured history is the record of what jobs running on that code did: keep
it, so every later version must replay it. Capture new scenarios when the
workflow gains a path or versions a change (workflow.patched), never to make a
failing replay test pass.
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path

from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from contracts.events import BatchEvent
from contracts.job import BatchJobInput, FanOutInput, PhaseDeadlines, QuotaRetry, RequestTally
from contracts.names import FAILURE_CREATE_OUTCOME_UNKNOWN, SIGNAL_BATCH_EVENT
from contracts.steps import CollectedResults
from devstack.scripted import ScriptedBatch
from devstack.temporal import start_time_skipping
from workflows.batch_job import BatchJobWorkflow
from workflows.fan_out import BatchFanOutWorkflow

HISTORIES = Path(__file__).parent / "histories"


def job(**overrides: object) -> BatchJobInput:
    return BatchJobInput.model_validate(
        {"input_path": "in/batch.jsonl", "poll_interval": timedelta(minutes=10), **overrides}
    )


Scenario = Callable[[Client, str], Awaitable[WorkflowHandle]]  # type: ignore[type-arg]


async def _run(client: Client, queue: str, request: BatchJobInput) -> WorkflowHandle:  # type: ignore[type-arg]
    handle = await client.start_workflow(
        BatchJobWorkflow.run, request, id=f"replay-{uuid.uuid4().hex[:8]}", task_queue=queue
    )
    try:
        await handle.result()
    except Exception:  # the failed scenario fails on purpose
        pass
    return handle


WANTED: set[str] = set()


async def capture(
    name: str, script: ScriptedBatch, body: Scenario, env: WorkflowEnvironment
) -> None:
    target = HISTORIES / f"{name}.json"
    if (WANTED and name not in WANTED) or (not WANTED and target.exists()):
        return
    queue = f"capture-{uuid.uuid4().hex[:8]}"
    async with Worker(
        env.client,
        task_queue=queue,
        workflows=[BatchJobWorkflow, BatchFanOutWorkflow],
        activities=script.activities(),
    ):
        handle = await body(env.client, queue)
        history = await handle.fetch_history()
    record = {"workflow_id": handle.id, "history": json.loads(history.to_json())}
    target.write_text(json.dumps(record, indent=1) + "\n")
    print(f"{name}: {len(history.events)} events")


async def main() -> None:
    env = await start_time_skipping()
    try:
        await capture(
            "succeeded_24h",
            ScriptedBatch(path=[("validating", 1), ("in_progress", 144), ("finalizing", 1)]),
            lambda c, q: _run(c, q, job()),
            env,
        )
        await capture(
            "completed_with_failures",
            ScriptedBatch(
                collected=CollectedResults(
                    requests=RequestTally(total=5, succeeded=3, failed=2),
                    usage={},
                )
            ),
            lambda c, q: _run(c, q, job()),
            env,
        )
        await capture(
            "expired",
            ScriptedBatch(path=[("validating", 1), ("in_progress", 150)], final="expired"),
            lambda c, q: _run(c, q, job()),
            env,
        )
        await capture(
            "gateway_rejected",
            ScriptedBatch(path=[("validating", 2)], final="failed", errors=["line 3: bad"]),
            lambda c, q: _run(c, q, job()),
            env,
        )
        await capture(
            "deadline_exceeded",
            ScriptedBatch(path=[("validating", 10**6)]),
            lambda c, q: _run(c, q, job(deadlines=PhaseDeadlines(validating=timedelta(hours=2)))),
            env,
        )

        async def fan_out(client: Client, queue: str) -> WorkflowHandle:  # type: ignore[type-arg]
            handle = await client.start_workflow(
                BatchFanOutWorkflow.run,
                FanOutInput(jobs=[job(input_path="a.jsonl"), job(input_path="b.jsonl")]),
                id=f"replay-parent-{uuid.uuid4().hex[:8]}",
                task_queue=queue,
            )
            await handle.result()
            return handle

        await capture("fan_out", ScriptedBatch(), fan_out, env)

        async def cancelled(client: Client, queue: str) -> WorkflowHandle:  # type: ignore[type-arg]
            handle = await client.start_workflow(
                BatchJobWorkflow.run, job(), id=f"replay-{uuid.uuid4().hex[:8]}", task_queue=queue
            )
            for _ in range(200):
                progress = await handle.query(BatchJobWorkflow.progress)
                if progress.batch_status == "in_progress":
                    break
                await asyncio.sleep(0.05)
            await handle.cancel()
            await handle.result()
            return handle

        await capture("cancelled", ScriptedBatch(path=[("in_progress", 10**6)]), cancelled, env)
        await capture(
            "file_pending",
            ScriptedBatch(file_pending_polls=30),
            lambda c, q: _run(c, q, job()),
            env,
        )
        # The upload's answer says processed: no step waits for it (upload-ready-v1).
        await capture("upload_ready", ScriptedBatch(), lambda c, q: _run(c, q, job()), env)
        await capture(
            "attached",
            ScriptedBatch(),
            lambda c, q: _run(c, q, job(batch_id="batch_by_hand")),
            env,
        )
        await capture(
            "create_outcome_unknown",
            ScriptedBatch(
                create_failure=ApplicationError(
                    "job j: the gateway may hold a batch tagged temporal_job_key=j",
                    type=FAILURE_CREATE_OUTCOME_UNKNOWN,
                    non_retryable=True,
                )
            ),
            lambda c, q: _run(c, q, job()),
            env,
        )

        async def cancelled_during_create(client: Client, queue: str) -> WorkflowHandle:  # type: ignore[type-arg]
            handle = await client.start_workflow(
                BatchJobWorkflow.run,
                job(heartbeat_timeout=timedelta(seconds=1)),
                id=f"replay-{uuid.uuid4().hex[:8]}",
                task_queue=queue,
            )
            for _ in range(200):
                progress = await handle.query(BatchJobWorkflow.progress)
                if progress.phase == "creating_batch":
                    break
                await asyncio.sleep(0.05)
            await handle.cancel()
            try:
                await handle.result()
            except Exception:  # cancelled on purpose
                pass
            return handle

        await capture(
            "cancelled_during_create_lookup",
            ScriptedBatch(create_hangs=True),
            cancelled_during_create,
            env,
        )
        await capture(
            "cancelled_during_create",
            ScriptedBatch(create_finishes_on_cancel=True),
            cancelled_during_create,
            env,
        )
        await capture_watch_scenarios(env, cancelled, fan_out)
        await capture_create_and_attach_scenarios(env)
        await capture_clean_up_scenarios(env)
        await capture_lean_scenarios(env)
        await capture_collect_cleans_up_scenarios(env)
        await capture_submit_scenarios(env)
        await capture_wait_out_scenarios(env)
        await capture_gateway_edge_scenarios(env)
        await capture_batch_event_scenarios(env)
    finally:
        await env.shutdown()


async def capture_watch_scenarios(
    env: WorkflowEnvironment, cancelled: Scenario, fan_out: Scenario
) -> None:
    """The paths of the wait in one watch_batch activity (patch watch-batch-in-one-activity)."""
    hours = 6  # polls of 10 minutes

    def simple(request: BatchJobInput) -> Scenario:
        return lambda c, q: _run(c, q, request)

    await capture(
        "watch_succeeded_24h",
        ScriptedBatch(path=[("validating", 1), ("in_progress", 144), ("finalizing", 1)]),
        simple(job()),
        env,
    )
    await capture(
        "watch_expired",
        ScriptedBatch(path=[("validating", 1), ("in_progress", 150)], final="expired"),
        simple(job()),
        env,
    )
    await capture(
        "watch_gateway_rejected",
        ScriptedBatch(path=[("validating", 2)], final="failed", errors=["line 3: bad"]),
        simple(job()),
        env,
    )
    await capture(
        "watch_stuck_cancelled_after_outage",
        ScriptedBatch(path=[("validating", 1), ("in_progress", 10**6)], outage_in="in_progress"),
        simple(job()),
        env,
    )
    await capture(
        "watch_moved_on_after_outage",
        ScriptedBatch(
            path=[("validating", 1), ("in_progress", 70 * hours), ("finalizing", 3 * hours)],
            outage_in="in_progress",
        ),
        simple(job()),
        env,
    )
    await capture(
        "watch_collect_after_outage",
        ScriptedBatch(collect_outage=timedelta(days=3)),
        simple(job()),
        env,
    )
    await capture(
        "watch_gateway_gave_up",
        ScriptedBatch(
            path=[("in_progress", 5)],
            poll_failure=ApplicationError(
                "get batch: gateway answered 401", type="AuthenticationError", non_retryable=True
            ),
        ),
        simple(job()),
        env,
    )
    await capture(
        "watch_failed_mid_run",
        ScriptedBatch(
            path=[("validating", 1), ("in_progress", 2)],
            final="failed",
            errors=["[token_limit_exceeded] enqueued token limit reached"],
            output_on_failure=True,
        ),
        simple(job()),
        env,
    )
    await capture("watch_cancelled", ScriptedBatch(path=[("in_progress", 10**6)]), cancelled, env)
    await capture(
        "watch_cancel_without_route",
        ScriptedBatch(path=[("validating", 1), ("in_progress", 30)], cancel_unsupported=True),
        cancelled,
        env,
    )
    await capture("watch_fan_out", ScriptedBatch(), fan_out, env)
    # A new job that asks for the earlier wait: the watch's marker, then retries of one poll.
    await capture(
        "wait_by_retries",
        ScriptedBatch(path=[("validating", 1), ("in_progress", 6), ("finalizing", 1)]),
        simple(job(wait_by="retries")),
        env,
    )


async def capture_create_and_attach_scenarios(env: WorkflowEnvironment) -> None:
    """Quota refusals waited out (or failed fast, as a shard), and a cancel while attaching
    (patch cancel-during-attach-v1)."""
    await capture(
        "quota_waited",
        ScriptedBatch(create_quota_refusals=2),
        lambda c, q: _run(c, q, job()),
        env,
    )
    await capture(
        "quota_refused_shard",
        ScriptedBatch(create_quota_refusals=1),
        lambda c, q: _run(c, q, job(quota_retry=None)),
        env,
    )

    async def cancelled_while_attaching(client: Client, queue: str) -> WorkflowHandle:  # type: ignore[type-arg]
        handle = await client.start_workflow(
            BatchJobWorkflow.run,
            job(batch_id="batch_by_hand"),
            id=f"replay-{uuid.uuid4().hex[:8]}",
            task_queue=queue,
        )
        for _ in range(200):
            if script.called("attach_batch"):
                break
            await asyncio.sleep(0.05)
        await handle.cancel()
        for _ in range(200):
            events = (await handle.fetch_history()).events
            if any(
                e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCEL_REQUESTED
                for e in events
            ) and events[-1].event_type == (EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED):
                break
            await asyncio.sleep(0.05)
        script.release.set()
        await handle.result()
        return handle

    script = ScriptedBatch(path=[("in_progress", 10**6)], attach_holds=True)
    await capture("cancelled_while_attaching", script, cancelled_while_attaching, env)


async def capture_clean_up_scenarios(env: WorkflowEnvironment) -> None:
    """The job's last step: input index and gateway files (patch clean-up-v1)."""

    def simple(request: BatchJobInput) -> Scenario:
        return lambda c, q: _run(c, q, request)

    async def cancelled_during_create(client: Client, queue: str) -> WorkflowHandle:  # type: ignore[type-arg]
        handle = await client.start_workflow(
            BatchJobWorkflow.run,
            job(heartbeat_timeout=timedelta(seconds=1)),
            id=f"replay-{uuid.uuid4().hex[:8]}",
            task_queue=queue,
        )
        for _ in range(200):
            progress = await handle.query(BatchJobWorkflow.progress)
            if progress.phase == "creating_batch":
                break
            await asyncio.sleep(0.05)
        await handle.cancel()
        try:
            await handle.result()
        except Exception:  # cancelled on purpose
            pass
        return handle

    await capture("clean_up_succeeded", ScriptedBatch(), simple(job()), env)
    await capture("clean_up_kept", ScriptedBatch(), simple(job(keep_gateway_files=True)), env)
    await capture(
        "clean_up_rejected",
        ScriptedBatch(path=[("validating", 2)], final="failed", errors=["line 3: bad"]),
        simple(job()),
        env,
    )
    await capture(
        "clean_up_cancelled_during_create",
        ScriptedBatch(create_hangs=True),
        cancelled_during_create,
        env,
    )
    await capture(
        "clean_up_failing",
        ScriptedBatch(
            clean_up_failure=ApplicationError("delete file: gateway answered 503", type="X")
        ),
        simple(job()),
        env,
    )


async def capture_lean_scenarios(env: WorkflowEnvironment) -> None:
    """Fewer hops a job: validate-and-upload-v1, and a watch that settles before it reports."""
    await capture("validate_and_upload", ScriptedBatch(), lambda c, q: _run(c, q, job()), env)
    await capture(
        "validate_and_upload_file_pending",
        ScriptedBatch(file_pending_polls=3),
        lambda c, q: _run(c, q, job()),
        env,
    )
    # The batch is in_progress by the watch's first read and finalizing by its second:
    # one watch reports finalizing, instead of one watch per status.
    await capture(
        "watch_settles_before_reporting",
        ScriptedBatch(
            path=[("validating", 0), ("in_progress", 1), ("finalizing", 1)], settles=True
        ),
        lambda c, q: _run(c, q, job()),
        env,
    )


async def capture_collect_cleans_up_scenarios(env: WorkflowEnvironment) -> None:
    """The collect step deletes the gateway files, no clean-up step after it
    (collect-cleans-up-v1), and such a job records no watch patch."""

    def simple(request: BatchJobInput) -> Scenario:
        return lambda c, q: _run(c, q, request)

    await capture("collect_cleans_up", ScriptedBatch(), simple(job()), env)
    await capture(
        "collect_cleans_up_kept", ScriptedBatch(), simple(job(keep_gateway_files=True)), env
    )
    # An older worker's collect deletes nothing and says nothing: the clean-up step does.
    await capture(
        "collect_cleans_up_older_worker",
        ScriptedBatch(collect_deletes_nothing=True),
        simple(job()),
        env,
    )
    await capture(
        "collect_cleans_up_deadline",
        ScriptedBatch(path=[("validating", 10**6)]),
        simple(job(deadlines=PhaseDeadlines(validating=timedelta(hours=2)))),
        env,
    )

    async def cancelled_during_collect(client: Client, queue: str) -> WorkflowHandle:  # type: ignore[type-arg]
        handle = await client.start_workflow(
            BatchJobWorkflow.run,
            job(heartbeat_timeout=timedelta(seconds=1)),
            id=f"replay-{uuid.uuid4().hex[:8]}",
            task_queue=queue,
        )
        for _ in range(400):
            if script.called("collect_results"):
                break
            await asyncio.sleep(0.05)
        await handle.cancel()
        for _ in range(200):
            events = (await handle.fetch_history()).events
            if any(
                e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCEL_REQUESTED
                for e in events
            ) and events[-1].event_type == (EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED):
                break
            await asyncio.sleep(0.05)
        script.release.set()
        await handle.result()
        return handle

    script = ScriptedBatch(
        path=[("validating", 0), ("in_progress", 0), ("finalizing", 0)], collect_hangs_once=True
    )
    await capture(
        "collect_cleans_up_cancelled_during_collect", script, cancelled_during_collect, env
    )


async def capture_submit_scenarios(env: WorkflowEnvironment) -> None:
    """Validate, upload and create in one step (submit-v1), and its ways back to the
    separate steps: an upload not processed yet, a create refused for quota."""

    def simple(request: BatchJobInput) -> Scenario:
        return lambda c, q: _run(c, q, request)

    async def cancelled_during_submit(client: Client, queue: str) -> WorkflowHandle:  # type: ignore[type-arg]
        handle = await client.start_workflow(
            BatchJobWorkflow.run,
            job(heartbeat_timeout=timedelta(seconds=1)),
            id=f"replay-{uuid.uuid4().hex[:8]}",
            task_queue=queue,
        )
        for _ in range(400):
            if script.called("create_batch"):
                break
            await asyncio.sleep(0.05)
        await handle.cancel()
        try:
            await handle.result()
        except Exception:  # cancelled on purpose
            pass
        return handle

    await capture("submitted", ScriptedBatch(), simple(job()), env)
    await capture("submitted_file_pending", ScriptedBatch(file_pending_polls=2), simple(job()), env)
    await capture(
        "submitted_quota_waited", ScriptedBatch(create_quota_refusals=2), simple(job()), env
    )
    await capture(
        "submitted_quota_refused_shard",
        ScriptedBatch(create_quota_refusals=1),
        simple(job(quota_retry=None)),
        env,
    )
    await capture(
        "submitted_create_refused",
        ScriptedBatch(
            create_failure=ApplicationError(
                "create batch: gateway answered 400", type="BadRequestError", non_retryable=True
            )
        ),
        simple(job()),
        env,
    )
    script = ScriptedBatch(create_hangs=True)
    await capture("submitted_cancelled_during_create", script, cancelled_during_submit, env)


async def capture_wait_out_scenarios(env: WorkflowEnvironment) -> None:
    """A batch the gateway did not cancel, waited for to its end (wait-out-uncancelled-v1)."""
    hours = 6  # polls of 10 minutes
    await capture(
        "waited_out_without_cancel_route",
        ScriptedBatch(
            path=[("validating", 1), ("in_progress", 5 * hours), ("finalizing", 1)],
            cancel_unsupported=True,
        ),
        lambda c, q: _run(c, q, job(deadlines=PhaseDeadlines(in_progress=timedelta(hours=1)))),
        env,
    )
    deadlines = PhaseDeadlines(in_progress=timedelta(hours=1), cancelling=timedelta(hours=1))
    await capture(
        "waited_out_cancelling",
        ScriptedBatch(
            path=[("validating", 1), ("in_progress", 10**6)], cancelling_for=timedelta(hours=5)
        ),
        lambda c, q: _run(c, q, job(deadlines=deadlines)),
        env,
    )


async def capture_gateway_edge_scenarios(env: WorkflowEnvironment) -> None:
    """A gateway that refuses the key past the patience (refused-not-cancelled-v1), a late
    quota refusal (late-quota-refusal-v1), a quota never fitted or waited for too long
    (quota-bounds-v1)."""

    def simple(request: BatchJobInput) -> Scenario:
        return lambda c, q: _run(c, q, request)

    refuses = ApplicationError(
        "the gateway refuses this worker's key since 2026-01-01 00:00:00 UTC, longer than the "
        "worker's patience (3600 s, GATEWAY_REFUSAL_PATIENCE_SECONDS): get batch: gateway "
        "answered 401",
        type="GatewayRefuses",
        non_retryable=True,
    )
    await capture(
        "gateway_refused_past_patience",
        ScriptedBatch(path=[("in_progress", 5)], poll_failure=refuses),
        simple(job()),
        env,
    )
    await capture(
        "late_quota_refusal_waited", ScriptedBatch(late_quota_refusals=1), simple(job()), env
    )
    await capture(
        "late_quota_refusal_shard",
        ScriptedBatch(late_quota_refusals=1),
        simple(job(quota_retry=None)),
        env,
    )
    await capture(
        "quota_never_fits",
        ScriptedBatch(
            create_quota_refusals=1000,
            quota_refusal_message="Enqueued token limit reached. Limit: 240 enqueued tokens.",
            input_tokens=480,
            largest_request_tokens=100,
        ),
        simple(job()),
        env,
    )
    await capture(
        "quota_wait_exceeded",
        ScriptedBatch(create_quota_refusals=10**6),
        simple(job(quota_retry=QuotaRetry(max_wait=timedelta(hours=1)))),
        env,
    )


async def capture_batch_event_scenarios(env: WorkflowEnvironment) -> None:
    """A batch event (the webhook receiver's signal) wakes a watch (batch-events-v1), and
    one for another batch changes nothing (no marker)."""

    def woken(script: ScriptedBatch, event_batch: str) -> Scenario:
        async def body(client: Client, queue: str) -> WorkflowHandle:  # type: ignore[type-arg]
            handle = await client.start_workflow(
                BatchJobWorkflow.run, job(), id=f"replay-{uuid.uuid4().hex[:8]}", task_queue=queue
            )
            # The watch holds in one attempt, as a real one does between its rare reads.
            for _ in range(400):
                if script.called("watch_batch"):
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)
            if event_batch == script.batch_id:
                script.hold_at, script.path = None, []  # the batch ended at the gateway
            await handle.signal(
                SIGNAL_BATCH_EVENT, BatchEvent(batch_id=event_batch, type="batch.completed")
            )
            if event_batch != script.batch_id:
                await asyncio.sleep(0.5)
                script.release.set()
            await handle.result()
            return handle

        return body

    script = ScriptedBatch(path=[("in_progress", 10**6)], hold_at=("in_progress", 0))
    await capture("batch_event_woke_the_watch", script, woken(script, script.batch_id), env)
    script = ScriptedBatch(path=[("in_progress", 10**6)], hold_at=("in_progress", 0))
    await capture("batch_event_for_another_batch", script, woken(script, "batch_other"), env)


if __name__ == "__main__":
    WANTED.update(sys.argv[1:])
    asyncio.run(main())
