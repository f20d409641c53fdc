"""Uploads the gateway has not processed yet, attaching to an existing batch, and a
cancel that reaches a create which finishes anyway."""

from __future__ import annotations

from datetime import timedelta

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError, is_cancelled_exception

from contracts.job import JobStatus
from contracts.names import FAILURE_BATCH_NOT_FOR_INPUT, FAILURE_INPUT_FILE_UNUSABLE, PATCH_SUBMIT
from devstack.scripted import ScriptedBatch
from tests.workflows.test_batch_job_workflow import job, run_job
from tests.workflows.test_failure_paths import own_time_skipping_env, wait_for_call

__all__ = ["own_time_skipping_env"]


async def test_a_pending_upload_is_waited_for_every_poll_then_the_batch_is_created(
    time_skipping_env,
):
    script = ScriptedBatch(file_pending_polls=30)
    before = await time_skipping_env.get_current_time()

    _, result = await run_job(time_skipping_env, script, job())

    assert result.status is JobStatus.SUCCEEDED
    names = [name for name, _ in script.calls if name != "watch_batch"]
    assert names.index("upload_input") < names.index("await_file_processed")
    assert names.index("await_file_processed") < names.index("create_batch")
    looks = script.called("await_file_processed")
    assert len(looks) == 31
    assert {(look.file_id, look.poll_seconds) for look in looks} == {("file-1", 600)}
    # 30 pending looks, 10 minutes apart: 5 hours, longer than any step's old deadline.
    assert await time_skipping_env.get_current_time() - before >= timedelta(hours=5)


async def test_an_upload_the_gateway_failed_to_process_fails_with_its_reason(time_skipping_env):
    script = ScriptedBatch(file_error="The input file contains a UTF-8 byte order mark.")

    with pytest.raises(WorkflowFailureError) as failure:
        await run_job(time_skipping_env, script, job())

    cause = failure.value.cause.cause
    assert isinstance(cause, ApplicationError)
    assert cause.type == FAILURE_INPUT_FILE_UNUSABLE
    assert "byte order mark" in cause.message and "file-1" in cause.message
    assert not script.called("create_batch")


async def test_attaching_waits_for_and_collects_an_existing_batch(time_skipping_env):
    script = ScriptedBatch()

    _, result = await run_job(time_skipping_env, script, job(batch_id="batch_by_hand"))

    assert result.status is JobStatus.SUCCEEDED
    assert result.batch_id == "batch_by_hand"
    assert result.input_file_id == "file-1"
    names = [name for name, _ in script.calls if name != "watch_batch"]
    assert names == ["validate_input", "attach_batch", "collect_results"]
    [attach] = script.called("attach_batch")
    assert (attach.batch_id, attach.input_path, attach.input_bytes) == (
        "batch_by_hand",
        "in/batch.jsonl",
        1000,
    )
    [collect] = script.called("collect_results")
    assert collect.batch.id == "batch_by_hand"


async def test_attaching_to_a_batch_of_another_input_fails_before_waiting(time_skipping_env):
    script = ScriptedBatch(
        attach_failure=ApplicationError(
            "cannot attach in/batch.jsonl to batch b: its input file holds 9 bytes",
            type=FAILURE_BATCH_NOT_FOR_INPUT,
            non_retryable=True,
        )
    )

    with pytest.raises(WorkflowFailureError) as failure:
        await run_job(time_skipping_env, script, job(batch_id="b"))

    assert failure.value.cause.cause.type == FAILURE_BATCH_NOT_FOR_INPUT
    assert script.polls == 0
    assert not script.called("cancel_batch"), "a batch the job did not make is not cancelled"


async def test_a_cancel_during_a_create_that_finishes_anyway_cancels_its_batch(
    own_time_skipping_env,
):
    script = ScriptedBatch(create_finishes_on_cancel=True)
    async with script.serving(own_time_skipping_env) as start:
        handle = await start(job(heartbeat_timeout=timedelta(seconds=1)))
        await wait_for_call(script, "create_batch")
        await handle.cancel()
        with pytest.raises(WorkflowFailureError) as failure:
            await handle.result()

    assert is_cancelled_exception(failure.value.cause)
    names = [name for name, _ in script.calls if name != "watch_batch"]
    assert names.index("create_batch_cancelled") < names.index("cancel_batch")
    [cancel] = script.called("cancel_batch")
    assert cancel.batch_id == "batch_1", "the batch the create returned is cancelled by id"
    assert script.polls == 0, "no wait for a batch the user cancelled"


@pytest.mark.parametrize("patches_off", [(), (PATCH_SUBMIT,)], ids=["submit", "create-step"])
async def test_a_create_given_up_on_a_file_never_processed_deletes_the_upload(
    time_skipping_env, patches_off: tuple[str, ...]
):
    script = ScriptedBatch(
        create_failure=ApplicationError(
            "the gateway still refuses a batch on input file file-1 as 'pending' ...",
            type=FAILURE_INPUT_FILE_UNUSABLE,
            non_retryable=True,
        ),
        patches_off=patches_off,
    )
    with pytest.raises(WorkflowFailureError):
        await run_job(time_skipping_env, script, job())
    [clean_up] = script.called("clean_up")
    assert clean_up.gateway_file_ids == ["file-1"], "no batch uses the upload: it is deleted"
    [create] = script.called("create_batch")
    assert create.give_up_pending_after_seconds == 4 * 3600, "the validating deadline"
