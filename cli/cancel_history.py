"""What the gateway answered a job that was cancelled before it had a result.

Such a job returns nothing to read the batch's fate from, but its history
holds every step it scheduled and each answer of the gateway to its cancel:
read from there, the starter says what happened rather than what was hoped for.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle

from contracts.batch_status import BatchStatus
from contracts.names import (
    ACTIVITY_ATTACH_BATCH,
    ACTIVITY_CANCEL_BATCH,
    ACTIVITY_CREATE_BATCH,
    ACTIVITY_SUBMIT_BATCH,
)
from contracts.steps import BatchSnapshot


@dataclass
class CancelTrail:
    """The steps a job scheduled, and what its cancel_batch steps returned (None: no batch)."""

    scheduled: set[str] = field(default_factory=set)
    cancel_answers: list[BatchSnapshot | None] = field(default_factory=list)
    attach_to: str | None = None
    """The input's batch_id: the job was to attach to this batch, made outside it."""


async def cancel_trail(handle: WorkflowHandle[Any, Any]) -> CancelTrail:
    trail = CancelTrail()
    types: dict[int, str] = {}
    converter = handle._client.data_converter
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
            payloads = event.workflow_execution_started_event_attributes.input.payloads
            [job] = await converter.decode(payloads) if payloads else [None]
            if isinstance(job, dict) and isinstance(job.get("batch_id"), str):
                trail.attach_to = job["batch_id"]
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            name = event.activity_task_scheduled_event_attributes.activity_type.name
            types[event.event_id] = name
            trail.scheduled.add(name)
        elif event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            done = event.activity_task_completed_event_attributes
            if types.get(done.scheduled_event_id) == ACTIVITY_CANCEL_BATCH:
                [answer] = await converter.decode(done.result.payloads, [BatchSnapshot])
                trail.cancel_answers.append(answer if isinstance(answer, BatchSnapshot) else None)
    return trail


def cancelled_without_result(workflow_id: str, trail: CancelTrail, last_known: str) -> str:
    """The line cancel prints for a job that ended cancelled with no result to report."""
    lead = f"job {workflow_id} cancelled"
    answers = [answer for answer in trail.cancel_answers if answer is not None]
    if answers:
        batch = answers[-1]
        if batch.status is BatchStatus.CANCELLED:
            said = f"batch {batch.id} cancelled at the gateway"
        elif batch.status is BatchStatus.CANCELLING:
            said = f"the gateway took the cancel of batch {batch.id} (it is cancelling)"
        else:
            said = f"batch {batch.id} was {batch.status} at the gateway, not cancelled"
        return f"{lead} while its batch was being made; {said}; nothing was collected"
    if trail.cancel_answers:
        return f"{lead} while its batch was being made; the gateway held no batch of the job's"
    if trail.scheduled & {ACTIVITY_CREATE_BATCH, ACTIVITY_SUBMIT_BATCH}:
        return (
            f"{lead} while its batch was being made, and the job could not tell whether the "
            f"gateway made one ({last_known}): look for it at the gateway"
        )
    if ACTIVITY_ATTACH_BATCH in trail.scheduled:
        # Since cancel-during-attach-v1 such a job cancels the batch and returns a result.
        return (
            f"{lead} while attaching, on a worker from before a cancel there cancelled the "
            f"batch: batch {trail.attach_to or '?'} was not cancelled ({last_known}); cancel "
            "it at the gateway"
        )
    if trail.attach_to is not None:
        return (
            f"{lead} before it attached to batch {trail.attach_to}: the job did not touch it, "
            "and it runs on at the gateway unless cancelled there"
        )
    return f"{lead} before it made a batch: nothing was sent to run"
