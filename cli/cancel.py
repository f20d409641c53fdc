"""`starter.py cancel`: ask the job to cancel, then say what happened at the gateway.

A cancel is a request to the workflow, which cancels the batch at the gateway
and collects what finished; the gateway may take a while, or not cancel at all
(a batch that completes first, a gateway with no cancel route). So the command
waits, for a bounded time, for the job to end and reports the batch's final
status and counts from its result. When the time runs out, or no worker runs,
it says what is known, never that the batch was cancelled before it was.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from temporalio.client import (
    Client,
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
)
from temporalio.exceptions import TemporalError, is_cancelled_exception
from temporalio.service import RPCError, RPCStatusCode

from cli import hints
from cli.cancel_history import cancel_trail, cancelled_without_result
from cli.exits import EXIT_FAILED, EXIT_NOT_SETTLED, EXIT_OK
from cli.follow import (
    QUERY_TIMEOUT,
    last_known_state,
    no_worker_answered,
    result_through_outages,
)
from cli.jobs import failure_text, worker_polls
from cli.progress import live_progress, render_progress
from contracts.batch_status import BatchStatus
from contracts.job import BatchJobResult, JobStatus

DEFAULT_WAIT_SECONDS = 60.0
_RETRY_SECONDS = 1.0


def collected(result: BatchJobResult) -> str:
    r = result.requests
    finished = r.succeeded + r.failed
    text = (
        f"{finished} of {r.total} requests had finished ({r.succeeded} succeeded, "
        f"{r.failed} failed) and were collected into {result.output_path}"
    )
    if r.failed or r.not_run:
        text += f"; {result.errors_path} holds the failed and the {r.not_run} not run"
    return text


def cancel_outcome(result: BatchJobResult) -> str:
    """What the cancel did at the gateway, read from the job's result."""
    batch = f"batch {result.batch_id}"
    status = result.batch_status
    if result.status is not JobStatus.CANCELLED:
        return (
            f"{batch} had already ended ({status}) when the cancel arrived; the job ended "
            f"{result.status.value}: {collected(result)}"
        )
    if status == BatchStatus.CANCELLED:
        return f"{batch} cancelled at the gateway; {collected(result)}"
    if status == BatchStatus.COMPLETED:
        return f"the gateway did not cancel {batch}: it ran to completion; {collected(result)}"
    if status in (BatchStatus.FAILED, BatchStatus.EXPIRED):
        return f"{batch} ended {status} at the gateway before it was cancelled; {collected(result)}"
    return (
        f"{batch} was still {status} at the gateway when the job stopped waiting for it "
        f"({result.reason}); it may still be billing; {collected(result)}"
    )


async def still_running(handle: WorkflowHandle[object, BatchJobResult], waited: float) -> str:
    """What is known when the wait ran out: the cancel is requested, the job has not ended."""
    lead = f"cancel requested for {handle.id}; after {waited:g}s the job has not ended"
    try:
        progress, trouble = await live_progress(handle, QUERY_TIMEOUT)
    except TemporalError as exc:
        known = last_known_state(await handle.describe())
        if no_worker_answered(exc):
            return (
                f"{lead}: no worker answered, so the cancel is carried out when one runs "
                f"({hints.worker()}); {known}"
            )
        return f"{lead}; {known}"
    shown = render_progress(progress, trouble)
    return f"{lead}: {shown} ({hints.starter('result', handle.id)} waits for the end)"


async def how_it_ended(
    handle: WorkflowHandle[object, BatchJobResult], description: WorkflowExecutionDescription
) -> str:
    """A closed job's end, as cancel reports it: from its result, or its history."""
    if description.status == WorkflowExecutionStatus.COMPLETED:
        return cancel_outcome(await handle.result())
    known = last_known_state(description)
    if description.status == WorkflowExecutionStatus.CANCELED:
        return cancelled_without_result(handle.id, await cancel_trail(handle), known)
    state = description.status.name if description.status else "UNKNOWN"
    return f"{state}, nothing to cancel; {known} ({hints.starter('result', handle.id)})"


async def cancel_and_report(client: Client, workflow_id: str, wait_seconds: float) -> int:
    handle = client.get_workflow_handle(workflow_id, result_type=BatchJobResult)
    description = await handle.describe()
    if description.status != WorkflowExecutionStatus.RUNNING:
        print(f"job {workflow_id} had already ended: {await how_it_ended(handle, description)}")
        return EXIT_OK
    try:
        await handle.cancel()
    except RPCError as exc:
        if exc.status is not RPCStatusCode.NOT_FOUND:
            raise
        # It ended between the look and the cancel: its result says how.
    if wait_seconds <= 0:
        print(f"cancel requested for {workflow_id}; {last_known_state(description)}")
        return EXIT_NOT_SETTLED
    if not await worker_polls(client, description.task_queue):
        print(
            f"cancel requested for {workflow_id}; no worker is polling task queue "
            f"{description.task_queue!r}, so the cancel is carried out when one runs "
            f"({hints.worker()}); {last_known_state(description)}"
        )
        return EXIT_NOT_SETTLED
    print(
        f"cancel requested for {workflow_id}; waiting up to {wait_seconds:g}s for the gateway "
        "to settle (--wait-seconds)",
        file=sys.stderr,
    )
    try:
        result = await asyncio.wait_for(
            result_through_outages(handle, _RETRY_SECONDS), wait_seconds
        )
    except TimeoutError:
        print(await still_running(handle, wait_seconds))
        return EXIT_NOT_SETTLED
    except WorkflowFailureError as exc:
        if is_cancelled_exception(exc.cause):
            print(await how_it_ended(handle, await handle.describe()))
            return EXIT_OK
        print(f"job {workflow_id} failed: {failure_text(exc)}")
        return EXIT_FAILED
    print(cancel_outcome(result))
    return EXIT_OK


async def cmd_cancel(args: argparse.Namespace, client: Client) -> int:
    return await cancel_and_report(client, args.workflow_id, args.wait_seconds)
