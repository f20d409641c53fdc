"""validate_and_upload: validation and the upload as one step, against the real emulator.

One trip through Temporal instead of two, with what each step promised kept:
bad input fails at once naming where, the upload is adopted on a retry, and
the content sent is the content validated.
"""

from __future__ import annotations

import time

import pytest
from temporalio.exceptions import ApplicationError

from activities.batch_activities import BatchActivities, upload_filename
from activities.input_index import input_index_location
from contracts.names import FAILURE_INPUT_CHANGED, FAILURE_INVALID_INPUT
from contracts.steps import ValidateAndUploadRequest, ValidatedUpload
from devstack.emulator import EmulatorProcess
from storage import LocalStorage
from tests.activities.helpers import ActivityRunner, chat_file
from tests.activities.test_batch_activities import INPUT, list_all, validate_request, write_input


@pytest.fixture
def key(request: pytest.FixtureRequest) -> str:
    """A job key of its own per test: the emulator keeps every earlier test's uploads."""
    return f"prepare-{request.node.name}-{time.time_ns()}"


def step(key: str) -> ValidateAndUploadRequest:
    return ValidateAndUploadRequest(validation=validate_request(), job_key=key)


async def retry_from(
    runner: ActivityRunner, acts: BatchActivities, key: str, checkpoint: ValidatedUpload
) -> ValidatedUpload:
    """The step's second attempt, after a worker died having heartbeated ``checkpoint``."""
    return await runner.run(
        acts.validate_and_upload,
        step(key),
        attempt=2,
        heartbeat_details=[checkpoint.model_dump(mode="json")],
    )


def uploads_named(emu: EmulatorProcess, filename: str) -> list[str]:
    return [f["id"] for f in list_all(emu, "/files") if f["filename"] == filename]


async def test_one_step_validates_the_input_then_uploads_it(
    emu: EmulatorProcess,
    runner: ActivityRunner,
    acts: BatchActivities,
    storage: LocalStorage,
    key: str,
) -> None:
    write_input(storage, chat_file(3))

    done = await runner.run(acts.validate_and_upload, step(key))

    assert done.summary is not None and done.uploaded is not None
    assert (done.summary.requests, done.summary.model) == (3, "gpt-4o-mini")
    assert (done.uploaded.adopted, done.uploaded.ready) == (False, True)
    filename = upload_filename(key, done.summary.sha256)
    assert uploads_named(emu, filename) == [done.uploaded.file_id]
    index = input_index_location("jobs/input.output.jsonl", done.summary.sha256)
    assert storage.path(index).exists(), "collection joins on the index validation wrote"


async def test_bad_input_fails_at_once_naming_the_line_and_field_and_uploads_nothing(
    emu: EmulatorProcess,
    runner: ActivityRunner,
    acts: BatchActivities,
    storage: LocalStorage,
    key: str,
) -> None:
    good = chat_file(2).splitlines()[0]
    write_input(storage, good + b"\n" + good.replace(b'"custom_id"', b'"customid"') + b"\n")
    files_before = len(list_all(emu, "/files"))

    with pytest.raises(ApplicationError) as caught:
        await runner.run(acts.validate_and_upload, step(key))

    error = caught.value
    assert error.type == FAILURE_INVALID_INPUT and error.non_retryable
    assert f"{INPUT}:2: field 'custom_id'" in error.message
    assert len(list_all(emu, "/files")) == files_before


async def test_a_retry_after_the_upload_adopts_that_file_even_where_files_cannot_be_listed(
    emu: EmulatorProcess,
    runner: ActivityRunner,
    acts: BatchActivities,
    storage: LocalStorage,
    key: str,
) -> None:
    write_input(storage, chat_file(3))
    first = await runner.run(acts.validate_and_upload, step(key))
    assert first.summary is not None and first.uploaded is not None
    emu.set_knobs(unsupported_routes=["list_files"])

    again = await retry_from(runner, acts, key, first)

    assert again.uploaded is not None and again.uploaded.file_id == first.uploaded.file_id
    assert again.uploaded.adopted, "a create after it must look for an earlier batch"
    emu.set_knobs(unsupported_routes=[])
    assert uploads_named(emu, upload_filename(key, first.summary.sha256)) == [
        first.uploaded.file_id
    ]


async def test_a_retry_after_validation_uploads_only_the_content_it_validated(
    emu: EmulatorProcess,
    runner: ActivityRunner,
    acts: BatchActivities,
    storage: LocalStorage,
    key: str,
) -> None:
    write_input(storage, chat_file(3))
    validated = await runner.run(acts.validate_input, validate_request())
    write_input(storage, chat_file(4))

    with pytest.raises(ApplicationError) as caught:
        await retry_from(runner, acts, key, ValidatedUpload(summary=validated))

    assert caught.value.type == FAILURE_INPUT_CHANGED and caught.value.non_retryable
    assert INPUT in caught.value.message
    assert uploads_named(emu, upload_filename(key, validated.sha256)) == []


async def test_an_upload_refused_for_good_leaves_no_index_behind(
    emu: EmulatorProcess,
    runner: ActivityRunner,
    acts: BatchActivities,
    storage: LocalStorage,
    key: str,
) -> None:
    """The job ends at this step, before the workflow learns the index exists."""
    content = chat_file(3)
    write_input(storage, content)
    emu.set_knobs(max_file_bytes=len(content) - 1)
    try:
        with pytest.raises(ApplicationError) as caught:
            await runner.run(acts.validate_and_upload, step(key))
    finally:
        emu.set_knobs(max_file_bytes=200 * 1024 * 1024)

    assert caught.value.non_retryable, caught.value.message
    assert not list(storage.path("jobs").glob("*.input-index")), "the input index was left behind"
