"""The input's sha256, computed at validation and carried: a later step refuses other bytes."""

from __future__ import annotations

import pytest
from temporalio.exceptions import ApplicationError

from activities.batch_activities import BatchActivities
from contracts.names import FAILURE_INPUT_CHANGED
from contracts.steps import CollectResultsRequest
from storage import LocalStorage
from tests.activities.helpers import ActivityRunner, chat_file
from tests.activities.test_batch_activities import INPUT, Job, write_input


@pytest.mark.parametrize(
    "replacement",
    [chat_file(4, prefix="other"), b"not json at all\n"],
    ids=["other-requests", "not-json"],
)
async def test_collect_refuses_an_input_changed_since_the_batch_was_created(
    runner: ActivityRunner, acts: BatchActivities, storage: LocalStorage, replacement: bytes
) -> None:
    job = Job(runner, acts, storage, key=f"job-checksum-{len(replacement)}")
    summary = await job.validate(chat_file(4))
    done = await job.wait(await job.create((await job.upload(summary)).file_id))
    write_input(storage, replacement)

    with pytest.raises(ApplicationError) as caught:
        await runner.run(
            acts.collect_results,
            CollectResultsRequest(
                batch=done,
                input_path=INPUT,
                output_path="out.jsonl",
                errors_path="errors.jsonl",
                not_run_code="succeeded",
                input_sha256=summary.sha256,
            ),
        )
    assert caught.value.type == FAILURE_INPUT_CHANGED
    assert caught.value.non_retryable
    assert caught.value.message.startswith(f"{INPUT} changed since batch {done.id} was created")
    assert not storage.path("out.jsonl").exists()
    assert not storage.path("errors.jsonl").exists()
