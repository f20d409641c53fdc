"""A running job's progress: read from Temporal, drawn as one line of text."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, TextIO

from temporalio.client import WorkflowHandle
from temporalio.exceptions import TemporalError

from contracts.job import BatchCounts, BatchJobResult, JobPhase, JobProgress
from contracts.names import (
    ACTIVITY_AWAIT_STATUS_CHANGE,
    ACTIVITY_SUBMIT_BATCH,
    ACTIVITY_VALIDATE_AND_UPLOAD,
    ACTIVITY_WATCH_BATCH,
    FAILURE_BATCH_NOT_CHANGED,
    QUERY_PROGRESS,
)
from contracts.sharding import ShardedJobResult
from contracts.steps import BatchSnapshot, BatchWatch, SubmittedBatch, ValidatedUpload

BAR_WIDTH = 30


async def live_progress(
    handle: WorkflowHandle[Any, Any], query_timeout: timedelta | None = None
) -> tuple[JobProgress, str | None]:
    """The workflow's own view, refreshed with the last poll's counts and any failing step.

    Counts between status changes live in the polling activity's heartbeat, not
    in history, so they are read from describe() rather than the query. Without
    a worker the query waits about 30 s on the server; query_timeout cuts that short.
    """
    progress: JobProgress = await handle.query(
        QUERY_PROGRESS, result_type=JobProgress, rpc_timeout=query_timeout
    )
    trouble: str | None = None
    description = await handle.describe()
    converter = handle._client.data_converter
    for pending in description.raw_description.pending_activities:
        name = pending.activity_type.name
        if name in _SUBMITTING and progress.phase is JobPhase.UPLOADING:
            details = pending.heartbeat_details.payloads
            [reached] = await converter.decode(details, [_SUBMITTING[name]]) if details else [None]
            running = step_running(reached)
            if running is not None:
                progress = progress.model_copy(update={"phase": running, "reason": None})
        if name == ACTIVITY_WATCH_BATCH and pending.heartbeat_details.payloads:
            [watched] = await converter.decode(pending.heartbeat_details.payloads, [BatchWatch])
            if isinstance(watched, BatchWatch) and watched.batch.status == progress.batch_status:
                progress = progress.model_copy(update={"counts": watched.batch.counts})
            if isinstance(watched, BatchWatch) and watched.gateway_error:
                trouble = f"gateway error, retrying: {watched.gateway_error}"
        elif name == ACTIVITY_AWAIT_STATUS_CHANGE and pending.heartbeat_details.payloads:
            # Jobs started before the watch (patch watch-batch-in-one-activity) still poll this way.
            [snapshot] = await converter.decode(pending.heartbeat_details.payloads, [BatchSnapshot])
            if isinstance(snapshot, BatchSnapshot) and snapshot.status == progress.batch_status:
                progress = progress.model_copy(update={"counts": snapshot.counts})
        elif (
            pending.attempt > 1
            and pending.last_failure.message
            and pending.last_failure.application_failure_info.type != FAILURE_BATCH_NOT_CHANGED
        ):
            trouble = f"{name} attempt {pending.attempt}: {pending.last_failure.message}"
    shards = [
        child.workflow_id
        for child in description.raw_description.pending_children
        if child.workflow_id.startswith(f"{handle.id}-shard-")
    ]
    if shards and progress.counts is not None:
        progress = await _with_shards_in_flight(handle, progress, shards, query_timeout)
    return progress, trouble


_SUBMITTING: dict[str, type[SubmittedBatch] | type[ValidatedUpload]] = {
    ACTIVITY_SUBMIT_BATCH: SubmittedBatch,
    ACTIVITY_VALIDATE_AND_UPLOAD: ValidatedUpload,
}
"""Steps that validate, upload (and create) in one: the workflow calls all of it uploading."""


def step_running(reached: object) -> JobPhase | None:
    """Which part of a submit step runs, from how far its last heartbeat says it got.

    None before its first beat (a step that ends within one beat never sends one):
    the workflow's own words, which name all parts, are shown then.
    """
    if not isinstance(reached, SubmittedBatch | ValidatedUpload):
        return None
    if reached.summary is None:
        return JobPhase.VALIDATING_INPUT
    if reached.uploaded is None or isinstance(reached, ValidatedUpload):
        return JobPhase.UPLOADING
    return JobPhase.CREATING_BATCH


async def _with_shards_in_flight(
    handle: WorkflowHandle[Any, Any],
    progress: JobProgress,
    shards: list[str],
    query_timeout: timedelta | None,
) -> JobProgress:
    """A sharded job's counts cover the shards that ended; add those of the shards running.

    Only the first round's shards (``<id>-shard-<n>``) are added: a follow-up
    round's requests are already counted, as failures, until they succeed.
    """
    assert progress.counts is not None
    completed, failed = progress.counts.completed, progress.counts.failed
    for workflow_id in shards:
        child = handle._client.get_workflow_handle(workflow_id)
        try:
            seen, _ = await live_progress(child, query_timeout)
        except TemporalError:
            continue  # it just ended, or has not run its first task: counted later
        if seen.counts is not None:
            completed += seen.counts.completed
            failed += seen.counts.failed
    counts = BatchCounts(total=progress.counts.total, completed=completed, failed=failed)
    return progress.model_copy(update={"counts": counts})


_BEFORE_THE_BATCH = frozenset(
    {JobPhase.VALIDATING_INPUT, JobPhase.UPLOADING, JobPhase.CREATING_BATCH}
)


def render_progress(progress: JobProgress, trouble: str | None, width: int = BAR_WIDTH) -> str:
    counts = progress.counts
    total = (counts.total if counts and counts.total else None) or progress.requests
    status = progress.batch_status or progress.phase.value
    if counts is not None and total:
        done = counts.completed + counts.failed
        filled = int(width * done / total)
        bar = "#" * filled + "-" * (width - filled)
        text = f"[{bar}] {done}/{total} finished, {counts.failed} failed · {status}"
    elif progress.batch_status:
        text = f"[{'-' * width}] {progress.phase.value} · {status}"
    elif progress.reason and progress.phase in _BEFORE_THE_BATCH:
        # One step may validate, upload and create: the workflow's reason says which are left.
        text = f"[{'-' * width}] {progress.reason}"
    else:
        text = f"[{'-' * width}] {progress.phase.value}"
    if trouble:
        text += f" · retrying {trouble}"
    return text


def render_finished(result: BatchJobResult | ShardedJobResult, width: int = BAR_WIDTH) -> str:
    """The bar at the job's end, from its result: drawn before the summary so the two agree."""
    if isinstance(result, ShardedJobResult):
        total, failed, status = result.requests, result.failed, result.status.value
        done = result.succeeded + result.failed
    else:
        tally = result.requests
        total, failed, status = tally.total, tally.failed, result.batch_status
        done = tally.succeeded + tally.failed
    filled = int(width * done / total) if total else width
    bar = "#" * filled + "-" * (width - filled)
    return f"[{bar}] {done}/{total} finished, {failed} failed · {status}"


def render_waiting(last: JobProgress | None, waiting_for: str, width: int = BAR_WIDTH) -> str:
    """The last progress seen, kept on screen while the starter waits for a worker or Temporal."""
    shown = render_progress(last, None, width) if last is not None else f"[{'-' * width}]"
    return f"{shown} · {waiting_for}"


class ProgressLine:
    """One line updated in place on a terminal; a new line per change anywhere else (logs, CI)."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.tty = out.isatty()
        self.last = ""

    def show(self, line: str) -> None:
        if line == self.last:
            return
        if self.tty:
            print(f"\r\033[K{line}", end="", file=self.out, flush=True)
        else:
            print(line, file=self.out, flush=True)
        self.last = line

    def close(self) -> None:
        """End the updating line, so what is printed next starts on its own."""
        if self.tty and self.last:
            print(file=self.out, flush=True)
