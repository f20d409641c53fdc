"""State a parent carries across continue-as-new: accepted only from the job itself.

`carried` is a field of the parents' inputs because continue-as-new can only
pass state through the input; a caller could send it too. A caller's
`carried` would let it pick the folder the job deletes at its end (with the
worker's credentials) or forge results, so a run takes it only when Temporal
says the run continues an earlier one, and a sharded job's `work_dir` only
when it is the folder the job itself would have chosen.
"""

from __future__ import annotations

from typing import TypeVar

from temporalio import workflow
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from contracts.ids import quoted
    from contracts.names import FAILURE_INVALID_JOB
    from contracts.sharding import ShardedProgress, store_work_dir, work_dir_for

Carried = TypeVar("Carried")


def own_carried(carried: Carried | None) -> Carried | None:
    """carried when this run continues an earlier one (the job made it), else refused."""
    if carried is not None and workflow.info().continued_run_id is None:
        raise ApplicationError(
            "the input's carried is the job's own state across continue-as-new; "
            "a caller may not send it: start the job without it",
            type=FAILURE_INVALID_JOB,
            non_retryable=True,
        )
    return carried


def own_sharded_progress(carried: ShardedProgress | None, output: str) -> ShardedProgress | None:
    """A sharded job's carried state, its shard folder one the job itself would choose."""
    progress = own_carried(carried)
    if progress is None or progress.work_dir is None:
        return progress
    workflow_id = workflow.info().workflow_id
    if progress.work_dir not in (
        work_dir_for(output, workflow_id),
        store_work_dir(output, workflow_id),
    ):
        raise ApplicationError(
            f"carried.work_dir {quoted(progress.work_dir)} is not this job's shard folder; "
            "a job reads and deletes only its own",
            type=FAILURE_INVALID_JOB,
            non_retryable=True,
        )
    return progress
