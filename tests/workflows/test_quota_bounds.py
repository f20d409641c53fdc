"""A job never waits for a quota it can never fit, and no quota wait is endless.

On the time-skipping server: days of refusals take a moment.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError

from contracts.job import QuotaRetry
from contracts.names import FAILURE_QUOTA_NEVER_FITS, FAILURE_QUOTA_WAIT_EXCEEDED, PATCH_SUBMIT
from devstack.scripted import ScriptedBatch
from tests.workflows.test_batch_job_workflow import job, run_job
from workflows.admission import quota_refused

STATES_240 = (
    "Enqueued token limit reached for gpt-4o-mini in organization org-x. Limit: 240 enqueued "
    "tokens. Please try again once some in_progress batches have been completed."
)


def failure_of(caught: pytest.ExceptionInfo[WorkflowFailureError]) -> ApplicationError:
    cause = caught.value.cause
    assert isinstance(cause, ApplicationError)
    return cause


def timers(history) -> int:  # type: ignore[no-untyped-def]
    return sum(1 for e in history.events if e.event_type == EventType.EVENT_TYPE_TIMER_STARTED)


@pytest.mark.parametrize("patches_off", [(), (PATCH_SUBMIT,)], ids=["submit", "create-step"])
async def test_a_batch_larger_than_the_stated_limit_fails_at_once_naming_it_and_the_split(
    time_skipping_env, patches_off: tuple[str, ...]
):
    script = ScriptedBatch(
        create_quota_refusals=1000,
        quota_refusal_message=STATES_240,
        input_tokens=480,
        largest_request_tokens=100,
        patches_off=patches_off,
    )
    with pytest.raises(WorkflowFailureError) as caught:
        await run_job(time_skipping_env, script, job())

    error = failure_of(caught)
    assert error.type == FAILURE_QUOTA_NEVER_FITS
    assert "about 480 input tokens" in error.message
    assert "enqueued-token limit of 240" in error.message
    assert "--max-enqueued-tokens 240 --max-batch-requests 2" in error.message
    assert "token_limit_exceeded" not in error.message, "a sharded parent would re-admit it"
    assert len(script.called("create_batch")) == 1, "no wait, no second create"
    [clean_up] = script.called("clean_up")
    assert clean_up.gateway_file_ids == ["file-1"], "the upload no batch uses is deleted"


async def test_a_single_request_larger_than_the_stated_limit_is_named(time_skipping_env):
    script = ScriptedBatch(
        create_quota_refusals=1000,
        quota_refusal_message=STATES_240,
        input_tokens=400,
        largest_request_tokens=300,
    )
    with pytest.raises(WorkflowFailureError) as caught:
        await run_job(time_skipping_env, script, job())

    error = failure_of(caught)
    assert error.type == FAILURE_QUOTA_NEVER_FITS
    assert "request 'req-7' alone has about 300 input tokens" in error.message
    assert "limit of 240" in error.message


@pytest.mark.parametrize("patches_off", [(), (PATCH_SUBMIT,)], ids=["submit", "create-step"])
async def test_a_shard_larger_than_the_stated_limit_fails_for_good_not_for_readmission(
    time_skipping_env, patches_off: tuple[str, ...]
):
    script = ScriptedBatch(
        create_quota_refusals=1000,
        quota_refusal_message=STATES_240,
        input_tokens=480,
        largest_request_tokens=100,
        patches_off=patches_off,
    )
    with pytest.raises(WorkflowFailureError) as caught:
        await run_job(time_skipping_env, script, job(quota_retry=None))

    error = failure_of(caught)
    assert error.type == FAILURE_QUOTA_NEVER_FITS
    assert "--max-batch-requests 2 or fewer" in error.message
    assert not quota_refused(caught.value), "the parent's admission does not start it again"


async def test_a_batch_that_fits_the_stated_limit_waits_for_it(time_skipping_env):
    script = ScriptedBatch(
        create_quota_refusals=2,
        quota_refusal_message=STATES_240,
        input_tokens=200,
        largest_request_tokens=40,
    )
    _, result = await run_job(time_skipping_env, script, job())
    assert result.batch_id == "batch_1"
    assert len(script.called("create_batch")) == 3


async def test_the_quota_wait_ends_after_max_wait_with_a_bounded_history(time_skipping_env):
    script = ScriptedBatch(create_quota_refusals=10**6)
    request = job(quota_retry=QuotaRetry(max_wait=timedelta(days=3)))

    async with script.serving(time_skipping_env) as start:
        handle = await start(request)
        with pytest.raises(WorkflowFailureError) as caught:
            await handle.result()
        history = await handle.fetch_history()

    error = failure_of(caught)
    assert error.type == FAILURE_QUOTA_WAIT_EXCEEDED
    assert "over 72." in error.message and "--max-quota-wait-hours" in error.message
    refusals = len(script.called("create_batch"))
    assert 380 < refusals <= 420, "one a 10.8 minutes once the back-off is at its ceiling"
    assert len(history.events) < 6_000, "Temporal warns at 10,240"
    assert timers(history) == refusals - 1
    [clean_up] = script.called("clean_up")
    assert clean_up.gateway_file_ids == ["file-1"]


async def test_a_long_max_wait_raises_the_back_off_so_the_history_stays_bounded(
    time_skipping_env,
):
    script = ScriptedBatch(create_quota_refusals=10**6)
    request = job(quota_retry=QuotaRetry(most=timedelta(minutes=1), max_wait=timedelta(days=30)))
    with pytest.raises(WorkflowFailureError) as caught:
        await run_job(time_skipping_env, script, request)

    assert failure_of(caught).type == FAILURE_QUOTA_WAIT_EXCEEDED
    assert len(script.called("create_batch")) <= 420, "30 days in about 400 refusals"
