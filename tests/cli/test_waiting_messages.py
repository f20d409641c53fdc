"""What the progress line says when the progress query or Temporal does not answer."""

from __future__ import annotations

from datetime import timedelta

import pytest
from temporalio.client import WorkflowQueryFailedError
from temporalio.service import RPCError, RPCStatusCode

from cli import hints
from cli.follow import TRANSIENT_STATUSES, waiting_for_query, waiting_for_temporal
from contracts.names import TASK_QUEUE


def rpc(status: RPCStatusCode, message: str) -> RPCError:
    return RPCError(message, status, b"")


@pytest.mark.parametrize(
    "timed_out",
    [
        rpc(RPCStatusCode.CANCELLED, "Timeout expired"),  # the client's rpc_timeout
        rpc(RPCStatusCode.DEADLINE_EXCEEDED, "query timed out before a worker could process it"),
    ],
)
def test_a_query_nobody_answers_in_time_waits_for_a_worker_on_the_task_queue(timed_out: RPCError):
    why = waiting_for_query(timed_out, TASK_QUEUE, timedelta(seconds=5))
    assert why == (
        f"waiting for a worker on task queue {TASK_QUEUE!r}: none answered within 5s "
        f"({hints.worker()})"
    )


def test_the_servers_no_poller_answer_is_shown_as_waiting_for_a_worker():
    why = waiting_for_query(
        rpc(
            RPCStatusCode.FAILED_PRECONDITION,
            "no poller seen for task queue recently, worker may be down",
        ),
        "q",
        timedelta(seconds=5),
    )
    assert why.startswith("waiting for a worker on task queue 'q': no poller seen")


def test_an_unreachable_server_is_waiting_for_temporal_not_for_a_worker():
    why = waiting_for_query(
        rpc(RPCStatusCode.UNAVAILABLE, "tcp connect error\ndetails"), "q", timedelta(seconds=5)
    )
    assert why == "waiting for Temporal: tcp connect error"
    assert waiting_for_temporal(rpc(RPCStatusCode.UNAVAILABLE, "")) == (
        "waiting for Temporal: no message"
    )


def test_a_query_the_workflow_rejects_says_progress_is_not_available():
    why = waiting_for_query(WorkflowQueryFailedError("unknown queryType progress"), "q", None)
    assert why == "progress not available: unknown queryType progress"


def test_refusals_are_not_waited_out():
    for status in (
        RPCStatusCode.NOT_FOUND,
        RPCStatusCode.PERMISSION_DENIED,
        RPCStatusCode.UNAUTHENTICATED,
        RPCStatusCode.INVALID_ARGUMENT,
    ):
        assert status not in TRANSIENT_STATUSES
    assert RPCStatusCode.UNAVAILABLE in TRANSIENT_STATUSES
