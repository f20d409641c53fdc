"""The wait of BatchJobWorkflow on watch_batch, and deadlines about the batch.

A mixin of the workflow: it needs the workflow's step runner, its view of the
batch (_observe) and its progress, and owns how a phase is watched: when a
watch must return, how its deadline is measured, and what happens past it.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from temporalio import workflow
from temporalio.types import MethodAsyncSingleParam

from workflows import step_options
from workflows.progress import describe
from workflows.step_options import StepOptions

with workflow.unsafe.imports_passed_through():
    from activities.batch_activities import BatchActivities
    from contracts.batch_status import BatchStatus
    from contracts.job import BatchJobInput, JobProgress
    from contracts.steps import BatchSnapshot, BatchWatch, WatchBatchRequest

Request = TypeVar("Request")
Response = TypeVar("Response")

PATCH_WATCH = "watch-batch-in-one-activity"
# What a watch returns for besides a status change, capped so the history of a
# job stays bounded (docs/reliability.md states the bound).
PROGRESS_STEP = 0.05
MAX_PROGRESS_REPORTS = 20
MAX_ERROR_REPORTS = 3
ERROR_REPORT_AFTER = timedelta(minutes=5)
# A watch reports a new non-terminal status (or progress) only once it has run
# one poll interval, at most this long: a batch that moves on within its first
# read costs one watch, not one per status. The heartbeat shows each read meanwhile.
MAX_SETTLE = timedelta(minutes=1)


class DeadlineExceeded(Exception):
    def __init__(self, phase: BatchStatus, limit: timedelta, last: BatchSnapshot) -> None:
        super().__init__(f"batch {last.id} spent longer than {limit} in {phase}")
        self.last = last


class Watching:
    """Watching one phase at a time; BatchJobWorkflow supplies _step and _observe."""

    _job: BatchJobInput
    _progress: JobProgress

    def __init__(self) -> None:
        self._first_seen: dict[BatchStatus, datetime] = {}
        self._progress_reports = 0
        self._error_reports = 0
        # Since when the gateway refuses to read the batch, as the last watch saw it.
        self._refused_since: datetime | None = None

    async def _step(
        self,
        activity: MethodAsyncSingleParam[BatchActivities, Request, Response],
        request: Request,
        options: StepOptions,
    ) -> Response:
        raise NotImplementedError

    def _observe(self, batch: BatchSnapshot) -> None:
        raise NotImplementedError

    async def _watch_step(self, request: WatchBatchRequest, options: StepOptions) -> BatchWatch:
        raise NotImplementedError

    async def _watch(self, batch: BatchSnapshot, limit: timedelta | None) -> BatchSnapshot:
        """Until the status changes; past the phase's deadline, read again, then give up.

        The deadline runs from when the gateway says the batch entered its
        status (or, where it does not say, when the job first saw it), so a
        job whose workers were away longer than the deadline still finds a
        batch that moved on or finished, and cancels only one really stuck.
        No limit: a batch the gateway would not cancel, watched until it ends.
        """
        status = batch.status
        while True:
            now = workflow.now()
            if limit is None:
                refresh = now + step_options.WATCH_REFRESH
                batch = await self._watch_once(batch, None, return_by=refresh)
                if batch.status != status or batch.status.is_terminal:
                    return batch
                continue
            deadline = self._phase_deadline(batch, limit)
            if now >= deadline:
                batch = await self._watch_once(batch, deadline, return_by=now)
                still = batch.status == status and not batch.status.is_terminal
                if still and workflow.now() >= self._phase_deadline(batch, limit):
                    raise DeadlineExceeded(status, limit, batch)
            else:
                refresh = now + step_options.WATCH_REFRESH
                batch = await self._watch_once(batch, deadline, return_by=min(deadline, refresh))
            if batch.status != status or batch.status.is_terminal:
                return batch

    async def _watch_once(
        self, batch: BatchSnapshot, deadline: datetime | None, *, return_by: datetime
    ) -> BatchSnapshot:
        self._progress.deadline = deadline
        self._progress.phase_since = self._phase_start(batch)
        workflow.set_current_details(describe(self._progress))
        counts = batch.counts
        report_every = None
        if counts is not None and counts.total and self._progress_reports < MAX_PROGRESS_REPORTS:
            report_every = max(1, math.ceil(counts.total * PROGRESS_STEP))
        report_errors = self._error_reports < MAX_ERROR_REPORTS
        watched = await self._watch_step(
            WatchBatchRequest(
                batch=batch,
                poll_seconds=self._job.poll_interval.total_seconds(),
                return_by=return_by,
                report_every=report_every,
                report_error_after_seconds=(
                    ERROR_REPORT_AFTER.total_seconds() if report_errors else None
                ),
                report_changes_after_seconds=min(
                    self._job.poll_interval, MAX_SETTLE
                ).total_seconds(),
                refused_since=self._refused_since,
            ),
            step_options.watch(self._job.heartbeat_timeout, self._job.poll_interval),
        )
        seen = watched.batch
        self._refused_since = watched.refused_since
        if watched.gateway_error is not None:
            self._error_reports += 1
        elif seen.status == batch.status and seen.finished != batch.finished:
            self._progress_reports += 1
        self._progress.gateway_error = watched.gateway_error
        self._observe(seen)
        return seen

    def _phase_start(self, batch: BatchSnapshot) -> datetime:
        stamp = batch.phase_started_at()
        if stamp is not None:
            return datetime.fromtimestamp(stamp, tz=UTC)
        return self._first_seen.setdefault(batch.status, workflow.now())

    def _phase_deadline(self, batch: BatchSnapshot, limit: timedelta) -> datetime:
        return self._phase_start(batch) + limit


def batch_files(batch: BatchSnapshot) -> str:
    """The batch and its files by id, so a person can find them at the gateway."""
    return (
        f"batch {batch.id} ({batch.status}; input file {batch.input_file_id or 'unknown'}, "
        f"output file {batch.output_file_id or 'none'}, "
        f"error file {batch.error_file_id or 'none'})"
    )
