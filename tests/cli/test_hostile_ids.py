"""A batch id that walks the gateway's paths: refused before any request, however it is sent.

Real processes: the dev server, the emulator, worker.py and starter.py. What a
user checks: the starter's one line, the job's failure, and that the gateway
never saw a request for the other file.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid

import httpx
import pytest
from temporalio.client import WorkflowFailureError

from cli.exits import EXIT_USAGE
from contracts.names import WORKFLOW_NAME
from devstack.process import REPO_ROOT
from tests.e2e.conftest import Stack

pytestmark = pytest.mark.e2e


def _upload_someone_elses_file(stack: Stack) -> str:
    with httpx.Client(base_url=stack.emulator.base_url, timeout=10) as http:
        answer = http.post(
            "/files",
            files={"file": ("theirs.jsonl", b'{"custom_id": "payroll-7"}\n', "application/jsonl")},
            data={"purpose": "batch"},
        )
        answer.raise_for_status()
        return str(answer.json()["id"])


async def test_a_traversal_batch_id_is_refused_by_the_starter_and_by_the_job(stack: Stack):
    other = _upload_someone_elses_file(stack)
    stack.write_input("in.jsonl", 3)
    traversal = f"../files/{other}/content"

    starter = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "starter.py", "attach", traversal, str(stack.data_dir / "in.jsonl")],
        cwd=REPO_ROOT,
        env={**os.environ, **stack.worker_env()},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert starter.returncode == EXIT_USAGE
    lines = starter.stderr.strip().splitlines()
    assert len(lines) == 1, starter.stderr
    assert "batch_id '../files/" in lines[0] and "is not an id" in lines[0]
    assert "payroll" not in starter.stdout + starter.stderr

    # A caller that skips the starter and starts the workflow by name.
    with stack.worker():
        with pytest.raises(WorkflowFailureError) as caught:
            await stack.client.execute_workflow(
                WORKFLOW_NAME,
                {"input_path": "in.jsonl", "batch_id": traversal},
                id=f"hostile-{uuid.uuid4().hex[:8]}",
                task_queue=stack.task_queue,
            )
    assert "is not an id" in str(caught.value.cause)

    # The gateway saw the upload above and no request for one object.
    calls = stack.emulator.stats()["api_calls"]
    assert calls["POST /files"] == 1
    assert [call for call in calls if "{id}" in call] == [], calls
