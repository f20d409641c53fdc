"""The README's "From another workflow" snippet, run as written on the time-skipping server."""

from __future__ import annotations

import importlib
import re
import sys
import uuid
from pathlib import Path

from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from contracts.names import TASK_QUEUE
from devstack.scripted import REQUESTS, ScriptedBatch
from workflows.batch_job import BatchJobWorkflow

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_snippet() -> str:
    section = README.read_text().split("## From another workflow", 1)[1]
    found = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert found, "the README's 'From another workflow' section has a python block"
    return found.group(1)


async def test_the_readme_parent_runs_a_batch_job_as_its_child(
    time_skipping_env: WorkflowEnvironment, tmp_path: Path, monkeypatch
) -> None:
    source = readme_snippet()
    queue = f"test-{uuid.uuid4()}"
    assert f'task_queue="{TASK_QUEUE}"' in source
    module_name = f"readme_parent_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module_name}.py").write_text(source.replace(TASK_QUEUE, queue))
    monkeypatch.syspath_prepend(str(tmp_path))
    parent = importlib.import_module(module_name).NightlyEvals
    script = ScriptedBatch()
    try:
        async with Worker(
            time_skipping_env.client,
            task_queue=queue,
            workflows=[parent, BatchJobWorkflow],
            activities=script.activities(),
        ):
            succeeded = await time_skipping_env.client.execute_workflow(
                parent.run, "evals/requests.jsonl", id=f"evals-{uuid.uuid4()}", task_queue=queue
            )
    finally:
        sys.modules.pop(module_name, None)
    assert succeeded == REQUESTS
    validated = script.called("validate_input")
    assert [request.input_path for request in validated] == ["evals/requests.jsonl"]
    assert [request.output_path for request in validated] == ["evals/results.jsonl"]
