"""The job's own metrics, through the SDK's workflow meter (which records nothing on replay)."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from contracts.batch_status import BatchStatus
    from contracts.job import RequestTally
    from contracts.sharding import JobCost
    from observability.names import (
        METRIC_BATCH_WAIT,
        METRIC_JOB_COST,
        METRIC_JOBS,
        METRIC_REQUESTS,
        METRIC_TOKENS,
    )


def count_job(status: str) -> None:
    workflow.metric_meter().create_counter(
        METRIC_JOBS, "Batch jobs that ended, by final status", "jobs"
    ).add(1, {"status": status})


def count_requests(tally: RequestTally) -> None:
    requests = workflow.metric_meter().create_counter(
        METRIC_REQUESTS, "Requests of finished jobs, by outcome", "requests"
    )
    for outcome, count in (
        ("succeeded", tally.succeeded),
        ("failed", tally.failed),
        ("not_run", tally.not_run),
    ):
        requests.add(count, {"outcome": outcome})


def record_wait(waited: timedelta, status: BatchStatus) -> None:
    workflow.metric_meter().create_histogram_float(
        METRIC_BATCH_WAIT, "From batch created to batch terminal, as the job saw it", "s"
    ).record(waited.total_seconds(), {"batch_status": status.value})


def record_cost(cost: JobCost) -> None:
    """A finished sharded job's tokens by model and its cost (the histogram's sum is the spend)."""
    meter = workflow.metric_meter()
    tokens = meter.create_counter(
        METRIC_TOKENS, "Tokens of finished jobs by model, from the responses' usage", "tokens"
    )
    for row in cost.by_model:
        # The price table's name, not the responses': a label's values stay few.
        model = row.priced_as or "unpriced"
        tokens.add(row.input_tokens, {"model": model, "direction": "input"})
        tokens.add(row.output_tokens, {"model": model, "direction": "output"})
    meter.create_histogram_float(
        METRIC_JOB_COST, "Cost of each finished job at batch prices", cost.currency
    ).record(cost.total, {"currency": cost.currency})
