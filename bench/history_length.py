"""Benchmark: history length of a 10-minute and a 24-hour batch.

BatchJobWorkflow waits with a watch activity that polls inside one attempt and
returns only with news (a status change, 5 % of progress, a 6-hour refresh;
docs/reliability.md states the bound). The baseline,
measured in the same run on the same time-skipping server, is the naive wait: a
workflow that runs the same steps but loops ``await workflow.sleep(poll)`` plus
a one-shot status activity until the batch is done. Both run against scripted
stand-ins of the activities (devstack/scripted.py), so no gateway is
involved; the time-skipping server makes 24 hours pass in seconds.

    python -m bench.history_length [--poll-seconds 60]

Exits 1 if a check fails.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.common import RetryPolicy
from temporalio.worker import Worker

from contracts.names import ACTIVITY_AWAIT_STATUS_CHANGE

with workflow.unsafe.imports_passed_through():
    from contracts.job import BatchJobInput, BatchJobResult, JobStatus
    from contracts.steps import (
        BatchSnapshot,
        CollectedResults,
        CollectResultsRequest,
        CreateBatchRequest,
        InputSummary,
        UploadedInput,
        UploadInputRequest,
        ValidateInputRequest,
    )
    from devstack.scripted import ScriptedBatch
    from devstack.temporal import start_time_skipping
    from workflows.batch_job import BatchJobWorkflow

# The bound of docs/reliability.md for these 5-request batches, with room to spare.
HISTORY_LIMIT = 100
RUN_TIMEOUT_SECONDS = 600.0
STEP_TIMEOUT = timedelta(minutes=5)
DURATIONS = (("10 min", timedelta(minutes=10)), ("24 h", timedelta(hours=24)))


# -- the baseline: a workflow.sleep polling loop ------------------------------------------


@workflow.defn(name="NaiveSleepPollWorkflow")
class NaiveSleepPollWorkflow:
    """The same steps as BatchJobWorkflow, waiting the obvious way: sleep, poll, repeat."""

    @workflow.run
    async def run(self, job: BatchJobInput) -> str:
        summary: InputSummary = await workflow.execute_activity(
            "validate_input",
            ValidateInputRequest(
                input_path=job.input_path,
                endpoint=job.endpoint,
                limits=job.limits,
                output_path=job.resolved_output_path,
                errors_path=job.resolved_errors_path,
            ),
            result_type=InputSummary,
            start_to_close_timeout=STEP_TIMEOUT,
        )
        uploaded: UploadedInput = await workflow.execute_activity(
            "upload_input",
            UploadInputRequest(
                input_path=job.input_path, job_key="naive", sha256=summary.sha256, bytes=1
            ),
            result_type=UploadedInput,
            start_to_close_timeout=STEP_TIMEOUT,
        )
        batch: BatchSnapshot = await workflow.execute_activity(
            "create_batch",
            CreateBatchRequest(
                input_file_id=uploaded.file_id,
                endpoint=job.endpoint,
                completion_window=job.completion_window,
                metadata=job.metadata,
                job_key="naive",
                not_before=workflow.now(),
            ),
            result_type=BatchSnapshot,
            start_to_close_timeout=STEP_TIMEOUT,
        )
        while not batch.status.is_terminal:
            await workflow.sleep(job.poll_interval)
            batch = await workflow.execute_activity(
                "get_batch_status",
                batch.id,
                result_type=BatchSnapshot,
                retry_policy=RetryPolicy(maximum_interval=job.poll_interval),
                start_to_close_timeout=STEP_TIMEOUT,
            )
        await workflow.execute_activity(
            "collect_results",
            CollectResultsRequest(
                batch=batch,
                input_path=job.input_path,
                output_path=job.resolved_output_path,
                errors_path=job.resolved_errors_path,
                not_run_code="not_run",
            ),
            result_type=CollectedResults,
            start_to_close_timeout=STEP_TIMEOUT,
        )
        return batch.status


def naive_activities(script: ScriptedBatch, unchanged_polls: int) -> list[Callable[..., Any]]:
    """The scripted steps plus a one-shot status read: in_progress for `unchanged_polls` reads."""
    reads = 0

    @activity.defn(name="get_batch_status")
    async def get_batch_status(batch_id: str) -> BatchSnapshot:
        nonlocal reads
        reads += 1
        return script.snapshot("in_progress" if reads < unchanged_polls else "completed")

    steps = [a for a in script.activities() if a.__name__ != ACTIVITY_AWAIT_STATUS_CHANGE]
    return [*steps, get_batch_status]


# -- running and measuring -----------------------------------------------------------------


@dataclass
class Run:
    events: int
    workflow_time: timedelta
    wall_seconds: float
    polls: int


async def measure(
    client: Client,
    workflow_name: str,
    workflows: list[type],
    activities: list[Callable[..., Any]],
    poll: timedelta,
    polls: int,
) -> Run:
    task_queue = f"bench-history-{uuid.uuid4().hex[:8]}"
    job = BatchJobInput(input_path="bench.jsonl", poll_interval=poll)
    async with Worker(
        client,
        task_queue=task_queue,
        workflows=workflows,
        activities=activities,
        # A bug fails the run instead of retrying its workflow task forever.
        workflow_failure_exception_types=[Exception],
    ):
        started = time.perf_counter()
        handle = await client.start_workflow(
            workflow_name,
            job,
            id=f"{task_queue}-{workflow_name}",
            task_queue=task_queue,
            execution_timeout=timedelta(days=3),
        )
        result = await asyncio.wait_for(handle.result(), RUN_TIMEOUT_SECONDS)
        wall = time.perf_counter() - started
    if isinstance(result, BatchJobResult):
        assert result.status is JobStatus.SUCCEEDED, result
    history = await handle.fetch_history()
    events = history.events
    span = events[-1].event_time.ToDatetime() - events[0].event_time.ToDatetime()
    return Run(events=len(events), workflow_time=span, wall_seconds=wall, polls=polls)


def fmt_span(span: timedelta) -> str:
    total = int(span.total_seconds())
    return f"{total // 3600:d}h{total % 3600 // 60:02d}m{total % 60:02d}s"


async def run(poll_seconds: float) -> bool:
    poll = timedelta(seconds=poll_seconds)
    env = await start_time_skipping()
    ours: dict[str, Run] = {}
    naive: dict[str, Run] = {}
    try:
        for label, duration in DURATIONS:
            polls = int(duration / poll)
            # `polls` unchanged polls, each followed by a poll interval; the next one sees it done.
            script = ScriptedBatch(path=[("in_progress", polls)])
            ours[label] = await measure(
                env.client,
                "BatchJobWorkflow",
                [BatchJobWorkflow],
                script.activities(),
                poll,
                polls,
            )
            print(f"  ours  {label:>6}: {ours[label].events} events", flush=True)
            naive[label] = await measure(
                env.client,
                "NaiveSleepPollWorkflow",
                [NaiveSleepPollWorkflow],
                naive_activities(ScriptedBatch(path=[("in_progress", polls)]), polls),
                poll,
                polls,
            )
            print(f"  naive {label:>6}: {naive[label].events} events", flush=True)
    finally:
        await env.shutdown()

    print()
    print(f"poll interval {poll_seconds:g} s; time-skipping test server; scripted activities")
    print(
        f"{'batch':>7} {'polls':>6} | {'ours':>6} {'naive':>7} {'naive/ours':>11} | "
        f"{'workflow time (ours, naive)':>28} | {'wall s (ours, naive)':>21}"
    )
    for label, _ in DURATIONS:
        o, n = ours[label], naive[label]
        print(
            f"{label:>7} {o.polls:>6} | {o.events:>6} {n.events:>7} "
            f"{n.events / o.events:>10.1f}x | "
            f"{fmt_span(o.workflow_time) + ', ' + fmt_span(n.workflow_time):>28} | "
            f"{f'{o.wall_seconds:.2f}, {n.wall_seconds:.2f}':>21}"
        )
    short, long = (ours[label] for label, _ in DURATIONS)
    checks = [
        (
            f"ours: 10 min and 24 h histories equal ({short.events} == {long.events})",
            short.events == long.events,
        ),
        (f"ours: under {HISTORY_LIMIT} events ({long.events})", long.events < HISTORY_LIMIT),
        (
            "workflow clock really ran 10 min and 24 h",
            all(ours[label].workflow_time >= duration for label, duration in DURATIONS),
        ),
    ]
    print()
    for text, ok in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {text}")
    return all(ok for _, ok in checks)


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--poll-seconds", type=float, default=60.0, help="poll interval (default 60)")
    opts = args.parse_args()
    ok = asyncio.run(run(opts.poll_seconds))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
