"""What an operator sees of a job: the worker's /metrics and its JSON log lines.

One job on real processes: a worker with WORKER_METRICS_PORT, LOG_FORMAT=json and
GATEWAY_API_KEY, against an emulator that demands that key (Kong's key-auth).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import timedelta

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from contracts.job import BatchJobInput, BatchJobResult, JobStatus
from contracts.names import WORKFLOW_NAME
from devstack.ports import free_port
from tests.e2e.conftest import Stack

pytestmark = pytest.mark.e2e

SECRET = "sk-e2e-" + uuid.uuid4().hex


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """(sample name, labels) -> value, for every sample of a Prometheus scrape."""
    found: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return found


def value(scraped: dict, name: str, **labels: str) -> float:
    """Sum of the samples of that name whose labels include these."""
    wanted = set(labels.items())
    matching = [v for (n, lbls), v in scraped.items() if n == name and wanted <= lbls]
    assert matching, f"no sample {name}{labels}; have {sorted({n for n, _ in scraped})}"
    return sum(matching)


async def scrape(port: int, *until_has: str, within: float = 15) -> dict:
    """The worker's metrics once every name is there (the SDK counts a workflow's
    completion after the workflow's own counters, so a scrape can fall between)."""
    deadline = time.monotonic() + within
    last = ""
    async with httpx.AsyncClient(timeout=5) as http:
        while time.monotonic() < deadline:
            try:
                last = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
            except httpx.TransportError:
                last = ""
            if all(name in last for name in until_has):
                return samples(last)
            await asyncio.sleep(0.2)
    raise AssertionError(f"{until_has} never all appeared on /metrics:\n{last[:2000]}")


async def test_a_job_shows_in_metrics_and_json_logs_and_the_key_nowhere(stack: Stack):
    count = 12
    source = stack.write_input("in.jsonl", count)
    stack.emulator.set_knobs(auth_header="apikey", auth_key=SECRET)
    port = free_port()
    worker = stack.worker(
        "observed", WORKER_METRICS_PORT=str(port), LOG_FORMAT="json", GATEWAY_API_KEY=SECRET
    )
    with worker:
        handle = await stack.client.start_workflow(
            WORKFLOW_NAME,
            BatchJobInput(
                input_path="in.jsonl",
                poll_interval=timedelta(seconds=1),
                heartbeat_timeout=timedelta(seconds=2),
            ),
            id=f"obs-{uuid.uuid4().hex[:8]}",
            task_queue=stack.task_queue,
            result_type=BatchJobResult,
        )
        result = await asyncio.wait_for(handle.result(), 60)
        scraped = await scrape(port, "llm_batch_jobs_total", "temporal_workflow_completed")
    assert result.status is JobStatus.SUCCEEDED

    # Ours.
    assert value(scraped, "llm_batch_jobs_total", status="succeeded") == 1
    assert value(scraped, "llm_batch_requests_total", outcome="succeeded") == count
    assert value(scraped, "llm_batch_requests_total", outcome="failed") == 0
    assert value(scraped, "llm_batch_requests_total", outcome="not_run") == 0
    assert value(scraped, "llm_batch_wait_seconds_count", batch_status="completed") == 1
    waited = value(scraped, "llm_batch_wait_seconds_sum")
    assert 0.5 <= waited <= (result.finished_at - result.started_at).total_seconds()
    assert value(scraped, "llm_batch_bytes_uploaded_total") == source.stat().st_size
    downloaded = (stack.data_dir / result.output_path).stat().st_size
    assert value(scraped, "llm_batch_bytes_downloaded_total") >= downloaded > 0
    # The SDK's own, on the same endpoint (the parser names counters with _total).
    assert value(scraped, "temporal_workflow_completed_total", workflow_type=WORKFLOW_NAME) >= 1
    # submit_batch, one watch at least, collect_results.
    assert value(scraped, "temporal_activity_execution_latency_count") >= 3

    log = worker.log()
    assert SECRET not in log
    lines = [json.loads(line) for line in log.splitlines() if line.strip()]
    assert all({"time", "level", "logger", "message"} <= line.keys() for line in lines)
    ours = [line for line in lines if line.get("workflow_id") == handle.id]
    activity_lines = [line for line in lines if "activity_type" in line]
    assert activity_lines, "no activity logged a line"
    assert all(line["workflow_id"] == handle.id for line in activity_lines)
    assert {line["activity_type"] for line in ours} >= {"submit_batch", "collect_results"}
    # The batch id tags the lines from the moment it is known.
    created = next(line for line in ours if line["message"].startswith("created batch"))
    assert created["batch_id"] == result.batch_id
    downloads = [line for line in ours if line["activity_type"] == "collect_results"]
    assert downloads and all(line["batch_id"] == result.batch_id for line in downloads)
