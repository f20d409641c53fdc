"""The rules that turn a finished batch and its results into the job's verdict."""

from __future__ import annotations

from contracts.job import BatchCounts, JobStatus, RequestTally, TokenTotals
from contracts.names import FAILURE_BATCH_FAILED
from contracts.steps import BatchSnapshot, CollectedResults
from workflows.outcome import Outcome, rejection


def ended(status: str, *, completed: int = 0, errors: list[str] | None = None) -> BatchSnapshot:
    return BatchSnapshot(
        id="batch_1",
        status=status,
        counts=BatchCounts(total=5, completed=completed),
        errors=errors or [],
    )


def collected(
    succeeded: int, total: int = 5, problems: list[str] | None = None
) -> CollectedResults:
    return CollectedResults(
        requests=RequestTally(total=total, succeeded=succeeded, failed=total - succeeded),
        usage=TokenTotals(),
        problems=problems or [],
    )


def test_a_completed_batch_whose_requests_all_succeeded_is_a_success():
    outcome = Outcome(ended("completed", completed=5))
    outcome.read_batch_end()
    outcome.read_results(collected(5))
    assert (outcome.status, outcome.reason) == (JobStatus.SUCCEEDED, None)


def test_failed_requests_make_the_job_completed_with_failures():
    outcome = Outcome(ended("completed", completed=5))
    outcome.read_results(collected(3, problems=["output line 4 is not JSON"]))
    assert outcome.status is JobStatus.COMPLETED_WITH_FAILURES
    assert outcome.reason == "2 of 5 requests did not succeed; output line 4 is not JSON"


def test_the_first_cause_is_the_one_reported():
    outcome = Outcome(ended("expired", completed=2))
    outcome.read_batch_end()
    outcome.read_results(collected(2))
    assert (outcome.status, outcome.reason) == (
        JobStatus.EXPIRED,
        "the batch ended expired at the gateway",
    )
    assert outcome.not_run_code == "batch_expired"


def test_a_deadline_or_cancel_is_not_overwritten_by_how_the_batch_ended():
    outcome = Outcome(ended("cancelled"), JobStatus.DEADLINE_EXCEEDED, "too long in validating")
    outcome.read_batch_end()
    assert (outcome.status, outcome.reason) == (
        JobStatus.DEADLINE_EXCEEDED,
        "too long in validating",
    )
    assert outcome.not_run_code == "batch_cancelled"


def test_a_batch_that_failed_mid_run_keeps_what_finished():
    batch = ended("failed", completed=3, errors=["[server_error] upstream died"])
    assert rejection(batch) is None
    outcome = Outcome(batch)
    outcome.read_batch_end()
    assert outcome.status is JobStatus.COMPLETED_WITH_FAILURES
    assert outcome.reason == "the batch failed at the gateway: [server_error] upstream died"


def test_a_batch_rejected_before_it_ran_fails_the_job_with_the_gateways_errors():
    error = rejection(ended("failed", errors=["line 2: [invalid_request] bad model"]))
    assert error is not None
    assert error.type == FAILURE_BATCH_FAILED and error.non_retryable
    assert "batch batch_1 failed validation" in str(error)
    assert "line 2: [invalid_request] bad model" in str(error)
    assert rejection(ended("completed", completed=5)) is None
