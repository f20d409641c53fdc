"""The workflow's own metrics are counted once per job, even when every task replays."""

from __future__ import annotations

import uuid
from collections import Counter

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import MetricBuffer, Runtime, TelemetryConfig
from temporalio.worker import Worker

from contracts.job import BatchJobInput, RequestTally, TokenTotals
from contracts.steps import CollectedResults
from devstack.scripted import ScriptedBatch
from observability.names import METRIC_BATCH_WAIT, METRIC_JOBS, METRIC_REQUESTS
from workflows.batch_job import BatchJobWorkflow


async def test_job_and_request_counts_survive_replay(time_skipping_env):
    buffer = MetricBuffer(10_000)
    runtime = Runtime(telemetry=TelemetryConfig(metrics=buffer))
    worker_client = await Client.connect(
        time_skipping_env.client.service_client.config.target_host,
        namespace=time_skipping_env.client.namespace,
        data_converter=pydantic_data_converter,
        runtime=runtime,
    )
    script = ScriptedBatch(
        collected=CollectedResults(
            requests=RequestTally(total=5, succeeded=3, failed=1, not_run=1), usage=TokenTotals()
        )
    )
    queue = f"test-{uuid.uuid4()}"
    async with Worker(
        worker_client,
        task_queue=queue,
        workflows=[BatchJobWorkflow],
        activities=script.activities(),
        max_cached_workflows=0,  # every workflow task replays the history from the start
    ):
        for _ in range(2):
            handle = await time_skipping_env.client.start_workflow(
                BatchJobWorkflow.run,
                BatchJobInput(input_path="in.jsonl"),
                id=f"job-{uuid.uuid4()}",
                task_queue=queue,
            )
            await handle.result()

    jobs: Counter[str] = Counter()
    requests: Counter[str] = Counter()
    waits: list[float] = []
    for update in buffer.retrieve_updates():
        name = update.metric.name
        if name == METRIC_JOBS:
            jobs[str(update.attributes["status"])] += int(update.value)
        elif name == METRIC_REQUESTS:
            requests[str(update.attributes["outcome"])] += int(update.value)
        elif name == METRIC_BATCH_WAIT:
            waits.append(float(update.value))
            assert update.attributes["batch_status"] == "completed"
    assert jobs == {"completed_with_failures": 2}
    assert requests == {"succeeded": 6, "failed": 2, "not_run": 2}
    # Five polls a minute apart (skipped time), recorded once per job.
    assert len(waits) == 2 and all(w >= 4 * 60 for w in waits)
