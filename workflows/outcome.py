"""How a batch job ends: the rules that turn a finished batch and its results into a verdict.

Pure, so the workflow's story reads as what it does and these rules read as
what they decide.
"""

from __future__ import annotations

from dataclasses import dataclass

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from contracts.batch_status import BatchStatus
    from contracts.job import JobStatus
    from contracts.names import FAILURE_BATCH_FAILED
    from contracts.quota import is_quota_refusal_text
    from contracts.steps import BatchSnapshot, CollectedResults

# The error code of the input requests a batch that ended early never ran.
NOT_RUN_CODES = {
    BatchStatus.EXPIRED: "batch_expired",
    BatchStatus.CANCELLED: "batch_cancelled",
    BatchStatus.FAILED: "batch_failed",
}


@dataclass
class Outcome:
    """The batch as it ended, and how the job ends so far: a success until shown otherwise."""

    batch: BatchSnapshot
    status: JobStatus = JobStatus.SUCCEEDED
    reason: str | None = None

    def downgrade(self, status: JobStatus, reason: str) -> None:
        """End worse than a success, unless an earlier cause already did (that one is told)."""
        if self.status is JobStatus.SUCCEEDED:
            self.status, self.reason = status, reason

    def read_batch_end(self) -> None:
        """A batch that failed mid-run, expired or was cancelled at the gateway is no success."""
        batch = self.batch
        if batch.status is BatchStatus.FAILED:
            # Failed mid-run: what finished is kept, the rest reported not run.
            self.downgrade(
                JobStatus.COMPLETED_WITH_FAILURES,
                "the batch failed at the gateway: " + "; ".join(batch.errors or ["?"]),
            )
        elif batch.status in (BatchStatus.EXPIRED, BatchStatus.CANCELLED):
            self.downgrade(
                JobStatus.EXPIRED if batch.status is BatchStatus.EXPIRED else JobStatus.CANCELLED,
                f"the batch ended {batch.status} at the gateway",
            )

    def read_results(self, collected: CollectedResults) -> None:
        """Any request that did not succeed, or an integrity problem, makes it no success."""
        tally = collected.requests
        if tally.failed or tally.not_run or collected.problems or tally.succeeded != tally.total:
            summary_line = (
                f"{tally.failed + tally.not_run} of {tally.total} requests did not succeed"
            )
            self.downgrade(
                JobStatus.COMPLETED_WITH_FAILURES, "; ".join([summary_line, *collected.problems])
            )

    @property
    def not_run_code(self) -> str:
        return NOT_RUN_CODES.get(self.batch.status, self.status.value)


def rejection(batch: BatchSnapshot) -> ApplicationError | None:
    """The failure of a job whose batch the gateway failed before it ran anything."""
    if batch.status is not BatchStatus.FAILED or _ran_something(batch):
        return None
    details = "\n".join(f"  {e}" for e in batch.errors) or "  (no details given)"
    return ApplicationError(
        f"batch {batch.id} failed validation at the gateway:\n{details}",
        batch.errors,
        type=FAILURE_BATCH_FAILED,
        non_retryable=True,
    )


def quota_refusal(batch: BatchSnapshot) -> str | None:
    """The gateway's words when it failed the batch for its enqueued-token quota before it
    ran anything (OpenAI's refusal at the end of validation); else None."""
    if batch.status is not BatchStatus.FAILED or _ran_something(batch):
        return None
    refusals = [error for error in batch.errors if is_quota_refusal_text(error)]
    return "; ".join(refusals) if refusals else None


def _ran_something(batch: BatchSnapshot) -> bool:
    return bool(
        batch.output_file_id
        or batch.error_file_id
        or (batch.counts is not None and batch.counts.completed + batch.counts.failed)
    )
