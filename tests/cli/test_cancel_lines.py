"""The lines `starter.py cancel` prints: what the gateway did, never what was hoped for."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from cli.cancel import cancel_outcome
from cli.cancel_history import CancelTrail, cancelled_without_result
from contracts.batch_status import BatchStatus
from contracts.job import BatchJobResult, JobStatus, RequestTally
from contracts.steps import BatchSnapshot


def result(status: JobStatus, batch_status: str, **tally: int) -> BatchJobResult:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    return BatchJobResult(
        status=status,
        batch_id="batch_1",
        batch_status=batch_status,
        input_file_id="file_1",
        output_path="in.output.jsonl",
        errors_path="in.errors.jsonl",
        requests=RequestTally(**tally),
        started_at=now,
        finished_at=now,
    )


def test_a_cancelled_batch_is_reported_with_what_was_collected():
    text = cancel_outcome(
        result(JobStatus.CANCELLED, "cancelled", total=40, succeeded=11, failed=1, not_run=28)
    )
    assert text.startswith("batch batch_1 cancelled at the gateway; 12 of 40 requests")
    assert "collected into in.output.jsonl" in text
    assert "in.errors.jsonl holds the failed and the 28 not run" in text


def test_a_batch_the_gateway_did_not_cancel_is_never_called_cancelled():
    text = cancel_outcome(result(JobStatus.CANCELLED, "completed", total=5, succeeded=5))
    assert text.startswith("the gateway did not cancel batch batch_1: it ran to completion")
    assert "5 of 5 requests had finished" in text
    still = cancel_outcome(result(JobStatus.CANCELLED, "cancelling", total=5, not_run=5))
    assert "still cancelling" in still and "may still be billing" in still
    late = cancel_outcome(result(JobStatus.SUCCEEDED, "completed", total=5, succeeded=5))
    assert late.startswith("batch batch_1 had already ended (completed) when the cancel arrived")
    for text in (still, late):
        assert "cancelled at the gateway" not in text


NO_BATCH_KNOWN = "no batch recorded yet"


def test_a_job_cancelled_before_its_create_sent_nothing():
    trail = CancelTrail(scheduled={"validate_input", "upload_input"})
    text = cancelled_without_result("job-1", trail, NO_BATCH_KNOWN)
    assert text == "job job-1 cancelled before it made a batch: nothing was sent to run"


def test_a_cancel_during_the_create_reports_the_gateways_answer():
    made = BatchSnapshot(id="batch_1", status=BatchStatus.CANCELLING)
    trail = CancelTrail(scheduled={"create_batch", "cancel_batch"}, cancel_answers=[made])
    text = cancelled_without_result("job-1", trail, NO_BATCH_KNOWN)
    assert "the gateway took the cancel of batch batch_1 (it is cancelling)" in text
    done = made.model_copy(update={"status": BatchStatus.CANCELLED})
    trail.cancel_answers = [done]
    assert "batch batch_1 cancelled at the gateway" in cancelled_without_result(
        "job-1", trail, NO_BATCH_KNOWN
    )
    ended = made.model_copy(update={"status": BatchStatus.COMPLETED})
    trail.cancel_answers = [ended]
    text = cancelled_without_result("job-1", trail, NO_BATCH_KNOWN)
    assert "batch batch_1 was completed at the gateway, not cancelled" in text


@pytest.mark.parametrize("create", ["create_batch", "submit_batch"])
def test_a_create_whose_batch_could_not_be_looked_up_is_not_called_cancelled(create: str):
    trail = CancelTrail(scheduled={create, "cancel_batch"})
    text = cancelled_without_result("job-1", trail, NO_BATCH_KNOWN)
    assert "could not tell whether the gateway made one" in text
    assert "cancelled at the gateway" not in text
    trail.cancel_answers = [None]
    text = cancelled_without_result("job-1", trail, NO_BATCH_KNOWN)
    assert text.endswith("the gateway held no batch of the job's")


def test_a_job_cancelled_before_or_while_attaching_never_says_its_batch_was_cancelled():
    before = CancelTrail(scheduled={"validate_input"}, attach_to="batch_by_hand")
    text = cancelled_without_result("job-1", before, NO_BATCH_KNOWN)
    assert "before it attached to batch batch_by_hand" in text
    assert "runs on at the gateway" in text and "nothing was sent" not in text
    old_worker = CancelTrail(
        scheduled={"validate_input", "attach_batch"}, attach_to="batch_by_hand"
    )
    text = cancelled_without_result("job-1", old_worker, NO_BATCH_KNOWN)
    assert "batch batch_by_hand was not cancelled" in text
    assert "cancelled at the gateway" not in text
