"""What the end-to-end tests share: a fast job, starting it, waiting on its progress, and
the checks a user makes of its results and of the gateway."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx

from contracts.job import BatchJobInput, BatchJobResult, JobProgress
from contracts.names import JOB_KEY_METADATA, QUERY_PROGRESS, WORKFLOW_NAME
from tests.e2e.conftest import Stack


def fast_job(**overrides: object) -> BatchJobInput:
    return BatchJobInput.model_validate(
        {
            "input_path": "in.jsonl",
            "poll_interval": timedelta(seconds=1),
            "heartbeat_timeout": timedelta(seconds=2),
            **overrides,
        }
    )


def ids_in(path: Path) -> list[str]:
    if not path.exists():
        return []
    return [json.loads(line)["custom_id"] for line in path.read_text().splitlines() if line]


def assert_each_request_exactly_once(stack: Stack, result: BatchJobResult, count: int) -> None:
    seen = ids_in(stack.data_dir / result.output_path) + ids_in(stack.data_dir / result.errors_path)
    duplicates = [cid for cid, n in Counter(seen).items() if n > 1]
    assert duplicates == []
    assert sorted(seen) == sorted(f"req-{i}" for i in range(count))
    assert not list(stack.data_dir.glob(".*.part"))


def gateway_objects(stack: Stack, job_key_prefix: str) -> tuple[list[dict], list[dict]]:
    """The job's input uploads and batches, as the gateway lists them."""
    with httpx.Client(base_url=stack.emulator.base_url, timeout=30) as http:
        files = http.get("/files", params={"purpose": "batch", "limit": 1000}).json()["data"]
        batches = http.get("/batches", params={"limit": 100}).json()["data"]
    mine = [
        b
        for b in batches
        if (b.get("metadata") or {}).get(JOB_KEY_METADATA, "").startswith(job_key_prefix)
    ]
    return files, mine


async def start(stack: Stack, job: BatchJobInput, prefix: str = "e2e") -> Any:
    return await stack.client.start_workflow(
        WORKFLOW_NAME,
        job,
        id=f"{prefix}-{uuid.uuid4().hex[:8]}",
        task_queue=stack.task_queue,
        result_type=BatchJobResult,
    )


async def wait_for(
    handle: Any, predicate: Callable[[JobProgress], bool], within: float = 60
) -> JobProgress:
    deadline = time.monotonic() + within
    last: JobProgress | None = None
    while time.monotonic() < deadline:
        try:
            last = await handle.query(QUERY_PROGRESS, result_type=JobProgress)
        except Exception:  # the workflow may not have run its first task yet
            last = None
        if last is not None and predicate(last):
            return last
        await asyncio.sleep(0.05)
    raise AssertionError(f"progress never matched; last seen {last}")
