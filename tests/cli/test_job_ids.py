"""Which workflow id a job gets, and how the starter tells the same job from another.

The id is the lock on the results file, so it must follow the results
location, not the input; the memo's identity says whether a running job under
that id is the one being started again.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cli.cancel import cancel_outcome
from cli.job_ids import JobIdentity, default_workflow_id, file_sha256
from contracts.job import BatchJobInput, BatchJobResult, JobStatus, RequestTally


def job(**fields: object) -> BatchJobInput:
    return BatchJobInput.model_validate({"input_path": "in.jsonl", **fields})


def test_the_same_results_location_gives_the_same_id_whatever_the_input():
    assert default_workflow_id(job(), "q") == default_workflow_id(job(), "q")
    other_input = job(input_path="other.jsonl", output_path="in.output.jsonl")
    assert default_workflow_id(other_input, "q") == default_workflow_id(job(), "q")


def test_another_results_location_or_task_queue_gives_another_id():
    ids = {
        default_workflow_id(job(), "q"),
        default_workflow_id(job(output_path="elsewhere.jsonl"), "q"),
        default_workflow_id(job(input_path="sub/in.jsonl"), "q"),
        default_workflow_id(job(), "another-queue"),
    }
    assert len(ids) == 4


def test_the_id_names_the_results_and_is_safe_to_type():
    assert default_workflow_id(job(), "q").startswith("batch-in-")
    odd = default_workflow_id(job(output_path="runs/{workflow_id} out.jsonl"), "q")
    assert odd.startswith("batch-workflow_id_out-")
    assert all(c.isalnum() or c in "._-" for c in odd)


def test_the_input_hash_is_the_files_sha256_read_in_chunks(tmp_path: Path):
    data = b'{"custom_id": "a"}\n' * 200_000  # several 1 MiB chunks
    path = tmp_path / "in.jsonl"
    path.write_bytes(data)
    assert file_sha256(path) == hashlib.sha256(data).hexdigest()


IDENTITY = JobIdentity(input_path="in.jsonl", input_sha256="a" * 64, endpoint="/v1/embeddings")


def test_the_same_identity_is_the_same_job():
    assert IDENTITY.differs_from(IDENTITY.model_copy()) is None


@pytest.mark.parametrize(
    ("running", "said"),
    [
        ({"input_sha256": "b" * 64}, "an earlier version of in.jsonl (sha256 bbbbbbbbbbbb"),
        ({"input_path": "x.jsonl", "input_sha256": "b" * 64}, "x.jsonl, not in.jsonl"),
        ({"endpoint": "/v1/chat/completions"}, "endpoint /v1/chat/completions"),
        ({"batch_id": "batch_1"}, "it runs batch batch_1"),
    ],
)
def test_another_identity_is_named_in_words(running: dict[str, str], said: str):
    why = IDENTITY.differs_from(IDENTITY.model_copy(update=running))
    assert why is not None and said in why


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
