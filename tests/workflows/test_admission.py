"""Admission of shards: the window, the token budget, and what a quota refusal changes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from temporalio.exceptions import ApplicationError, ChildWorkflowError, RetryState

from workflows.admission import Admission, quota_refused

NOW = datetime(2026, 11, 30, tzinfo=UTC)


def admission(max_concurrent: int = 3, max_tokens: int | None = None) -> Admission:
    return Admission(max_concurrent, max_tokens, timedelta(minutes=1), timedelta(minutes=3))


def test_the_window_and_the_token_budget_bound_what_starts() -> None:
    gate = admission(max_concurrent=2, max_tokens=100)
    assert gate.admits(500), "a shard alone over the budget still runs, alone"
    gate.start(0, 60)
    assert not gate.admits(50) and gate.admits(40)
    gate.start(1, 40)
    assert not gate.admits(0), "the window is full"
    gate.end(0)
    assert gate.admits(60)


def test_a_refusal_lowers_the_window_and_widens_it_again_as_batches_run() -> None:
    gate = admission(max_concurrent=4)
    for index in range(3):
        gate.start(index, 0)
    assert "another shard ends" in gate.refused(2, NOW)
    gate.end(2)
    assert gate.window == 2 and not gate.admits(0)
    gate.end(0)
    gate.succeeded()
    assert gate.window == 3


def test_with_nothing_in_flight_a_refusal_waits_a_back_off_that_doubles_to_its_ceiling() -> None:
    gate = admission()
    waits = []
    for _ in range(4):
        gate.start(0, 0)
        gate.refused(0, NOW)
        gate.end(0)
        assert gate.waiting_for_time and not gate.admits(0)
        assert gate.retry_at is not None
        waits.append(gate.retry_at - NOW)
        gate.waited()
        assert gate.admits(0)
    assert waits == [timedelta(minutes=m) for m in (1, 2, 3, 3)]


def test_a_quota_refusal_is_told_from_other_child_failures() -> None:
    def child_failure(message: str) -> ChildWorkflowError:
        error = ChildWorkflowError(
            "child failed",
            namespace="default",
            workflow_id="w",
            run_id="r",
            workflow_type="BatchJobWorkflow",
            initiated_event_id=1,
            started_event_id=2,
            retry_state=RetryState.NON_RETRYABLE_FAILURE,
        )
        error.__cause__ = ApplicationError(message, type="BatchFailed")
        return error

    assert quota_refused(child_failure("batch b failed validation:\n  [token_limit_exceeded] x"))
    assert not quota_refused(child_failure("batch b failed validation:\n  line 3: [invalid] x"))
