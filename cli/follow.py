"""Following a running job to its end, through worker outages and brief Temporal outages.

The job does not need the starter: a missing worker or an unreachable server
is shown on the progress line, and the line picks up again when they are back.
Only Ctrl-C, or the workflow closing, ends the following.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any, TextIO

from temporalio.client import WorkflowExecutionDescription, WorkflowExecutionStatus, WorkflowHandle
from temporalio.common import SearchAttributeKey
from temporalio.exceptions import TemporalError
from temporalio.service import RPCError, RPCStatusCode

from cli import hints
from cli.progress import ProgressLine, live_progress, render_progress, render_waiting
from contracts.job import BatchJobResult, JobProgress
from contracts.names import SEARCH_ATTRIBUTE_BATCH_ID, SEARCH_ATTRIBUTE_BATCH_STATUS

QUERY_TIMEOUT = timedelta(seconds=5)
"""A worker answers the progress query in milliseconds; without one the server waits ~30 s."""

TRANSIENT_STATUSES = frozenset(
    {
        RPCStatusCode.UNAVAILABLE,
        RPCStatusCode.DEADLINE_EXCEEDED,
        RPCStatusCode.RESOURCE_EXHAUSTED,
        RPCStatusCode.ABORTED,
        RPCStatusCode.INTERNAL,
        RPCStatusCode.UNKNOWN,
    }
)
"""Statuses of a server that is restarting, overloaded or briefly out of reach."""

_TIMED_OUT_STATUSES = frozenset({RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.CANCELLED})
"""The server's 'query timed out before a worker could process it', or our own rpc_timeout."""


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else "no message"


def waiting_for_temporal(exc: TemporalError) -> str:
    message = exc.message if isinstance(exc, RPCError) else str(exc)
    return f"waiting for Temporal: {_first_line(message)}"


def waiting_for_query(exc: TemporalError, task_queue: str, timeout: timedelta | None) -> str:
    """Why the progress query went unanswered, as the progress line says it."""
    if isinstance(exc, RPCError):
        if exc.status in _TIMED_OUT_STATUSES and timeout is not None:
            return (
                f"waiting for a worker on task queue {task_queue!r}: none answered within "
                f"{timeout.total_seconds():g}s ({hints.worker()})"
            )
        if exc.status in _TIMED_OUT_STATUSES or exc.status is RPCStatusCode.FAILED_PRECONDITION:
            return f"waiting for a worker on task queue {task_queue!r}: {_first_line(exc.message)}"
        if exc.status in TRANSIENT_STATUSES:
            return waiting_for_temporal(exc)
    return f"progress not available: {_first_line(str(exc))}"


async def follow(
    handle: WorkflowHandle[Any, BatchJobResult],
    out: TextIO,
    every: float,
    query_timeout: timedelta | None = QUERY_TIMEOUT,
    line: ProgressLine | None = None,
) -> None:
    """Print progress until the workflow closes: one updating line on a terminal.

    A caller that passes its own line closes it, after drawing the job's end on it.
    """
    owned = line is None
    line = line or ProgressLine(out)
    seen: JobProgress | None = None
    try:
        while True:
            try:
                description = await handle.describe()
            except RPCError as exc:
                line.show(render_waiting(seen, waiting_for_temporal(exc)))
                await asyncio.sleep(every)
                continue
            if description.status != WorkflowExecutionStatus.RUNNING:
                break
            try:
                seen, trouble = await live_progress(handle, query_timeout)
            except TemporalError as exc:
                why = waiting_for_query(exc, description.task_queue, query_timeout)
                line.show(render_waiting(seen, why))
            else:
                line.show(render_progress(seen, trouble))
            await asyncio.sleep(every)
    finally:
        if owned:
            line.close()


async def result_through_outages(
    handle: WorkflowHandle[Any, BatchJobResult], retry_every: float
) -> BatchJobResult:
    """The job's result; a Temporal outage delays it (follow() says so) rather than ends it."""
    while True:
        try:
            return await handle.result()
        except RPCError as exc:
            if exc.status not in TRANSIENT_STATUSES:
                raise
        await asyncio.sleep(retry_every)


def no_worker_answered(exc: TemporalError) -> bool:
    """The progress query timed out: no worker is there to answer it (or none in time)."""
    return isinstance(exc, RPCError) and exc.status in _TIMED_OUT_STATUSES


def last_known_state(description: WorkflowExecutionDescription) -> str:
    """What Temporal itself recorded of the batch (search attributes), with no worker asked."""
    attributes = description.typed_search_attributes
    batch_id = attributes.get(SearchAttributeKey.for_keyword(SEARCH_ATTRIBUTE_BATCH_ID))
    batch_status = attributes.get(SearchAttributeKey.for_keyword(SEARCH_ATTRIBUTE_BATCH_STATUS))
    if batch_id is None:
        return "no batch recorded yet"
    return f"batch {batch_id} was last seen {batch_status or 'with no status'}"
