"""When the create step may skip its look-up for an earlier batch: only for a fresh input.

A batch can use the job's input before the create's first attempt only when the
input is not this run's own upload: an upload adopted from an earlier attempt
or run, or a retried run of the same job (same job key, which derives from the
first run's id).
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from contracts.job import BatchJobInput
from devstack.scripted import ScriptedBatch


def job() -> BatchJobInput:
    return BatchJobInput.model_validate(
        {"input_path": "in/batch.jsonl", "poll_interval": timedelta(minutes=10)}
    )


@pytest.mark.parametrize("adopted", [False, True])
async def test_only_an_upload_made_by_this_run_skips_the_first_look(
    time_skipping_env: WorkflowEnvironment, adopted: bool
) -> None:
    script = ScriptedBatch(upload_adopted=adopted)
    async with script.serving(time_skipping_env) as start:
        await (await start(job())).result()

    [create] = script.called("create_batch")
    assert create.fresh_input is not adopted


async def test_a_retried_run_of_the_job_looks_before_its_first_create(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    script = ScriptedBatch(
        create_failure=ApplicationError("refused", type="Refused", non_retryable=True)
    )
    async with script.serving(time_skipping_env) as start:
        handle = await start(job(), retry_policy=RetryPolicy(maximum_attempts=2))
        with pytest.raises(WorkflowFailureError):
            await handle.result()

    first_run, retried_run = script.called("create_batch")
    assert first_run.job_key == retried_run.job_key
    assert (first_run.fresh_input, retried_run.fresh_input) == (True, False)
