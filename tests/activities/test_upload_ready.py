"""The upload's own answer says whether a batch may use the file now (no wait step needed).

Against the real emulator over HTTP; a pending file's hour passes by raising ``time_scale``.
"""

from __future__ import annotations

import pytest

from activities.batch_activities import BatchActivities
from contracts.steps import UploadedInput, UploadInputRequest
from devstack.emulator import EmulatorProcess
from storage import LocalStorage
from tests.activities.helpers import ActivityRunner, chat_file
from tests.activities.test_batch_activities import validate_request, write_input

HOUR = 3600.0


async def upload(
    runner: ActivityRunner, acts: BatchActivities, storage: LocalStorage, *, attempt: int = 1
) -> UploadedInput:
    write_input(storage, chat_file(3))
    summary = await runner.run(acts.validate_input, validate_request())
    request = UploadInputRequest(
        input_path="jobs/input.jsonl",
        job_key="ready-job",
        sha256=summary.sha256,
        bytes=summary.bytes,
    )
    return await runner.run(acts.upload_input, request, attempt=attempt)


async def test_an_upload_the_gateway_answers_processed_is_ready(
    emu: EmulatorProcess, runner: ActivityRunner, acts: BatchActivities, storage: LocalStorage
) -> None:
    uploaded = await upload(runner, acts, storage)
    assert (uploaded.adopted, uploaded.ready) == (False, True)


@pytest.mark.parametrize(
    "knobs", [{"file_processing_seconds": HOUR}, {"file_processing_error": "BOM"}]
)
async def test_an_upload_still_pending_or_failed_is_not_ready(
    emu: EmulatorProcess,
    runner: ActivityRunner,
    acts: BatchActivities,
    storage: LocalStorage,
    knobs: dict[str, object],
) -> None:
    emu.set_knobs(dialect="azure", **knobs)
    uploaded = await upload(runner, acts, storage)
    assert uploaded.ready is False


async def test_an_adopted_upload_is_ready_once_the_gateway_processed_it(
    emu: EmulatorProcess, runner: ActivityRunner, acts: BatchActivities, storage: LocalStorage
) -> None:
    emu.set_knobs(dialect="azure", file_processing_seconds=HOUR)
    first = await upload(runner, acts, storage)
    still_pending = await upload(runner, acts, storage, attempt=2)
    emu.set_knobs(time_scale=1e8)
    processed = await upload(runner, acts, storage, attempt=3)

    assert first.ready is False
    assert (still_pending.file_id, still_pending.adopted, still_pending.ready) == (
        first.file_id,
        True,
        False,
    )
    assert (processed.file_id, processed.adopted, processed.ready) == (first.file_id, True, True)
