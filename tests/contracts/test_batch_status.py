"""One batch status type in every layer, on the wire the same plain strings as before."""

from __future__ import annotations

import json
from datetime import timedelta

from temporalio.contrib.pydantic import pydantic_data_converter

from contracts.job import PhaseDeadlines
from contracts.steps import AwaitChangeRequest, BatchSnapshot
from gateway.models import BatchStatus


def test_a_status_crosses_process_lines_as_the_plain_openai_string():
    converter = pydantic_data_converter.payload_converter
    [payload] = converter.to_payloads([BatchSnapshot(id="b", status=BatchStatus.IN_PROGRESS)])
    assert json.loads(payload.data)["status"] == "in_progress"
    sent = '{"batch_id": "b", "known_status": "finalizing", "poll_seconds": 60}'
    assert AwaitChangeRequest.model_validate_json(sent).known_status is BatchStatus.FINALIZING


def test_each_unfinished_status_has_the_deadline_of_its_phase():
    deadlines = PhaseDeadlines(
        validating=timedelta(hours=1),
        in_progress=timedelta(hours=2),
        finalizing=timedelta(hours=3),
        cancelling=timedelta(hours=4),
    )
    unfinished = [status for status in BatchStatus if not status.is_terminal]
    assert {status: deadlines.for_status(status) for status in unfinished} == {
        BatchStatus.VALIDATING: timedelta(hours=1),
        BatchStatus.IN_PROGRESS: timedelta(hours=2),
        BatchStatus.FINALIZING: timedelta(hours=3),
        BatchStatus.CANCELLING: timedelta(hours=4),
    }
