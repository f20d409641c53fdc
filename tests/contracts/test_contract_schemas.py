"""The JSON contract other languages call BatchJobWorkflow by: committed, current, and usable."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema

from contracts.job import BatchJobInput, BatchJobResult

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "schemas"


def test_committed_schemas_match_the_models():
    for name, model in (("input", BatchJobInput), ("result", BatchJobResult)):
        committed = json.loads((SCHEMAS / f"batch_job_{name}.schema.json").read_text())
        assert committed == model.model_json_schema(), (
            f"schemas/batch_job_{name}.schema.json is stale: "
            f"python starter.py schema {name} > schemas/batch_job_{name}.schema.json"
        )


def test_the_starter_prints_the_schemas():
    run = subprocess.run(
        [sys.executable, "starter.py", "schema", "input"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["required"] == ["input_path"]


def test_a_caller_in_another_language_can_build_a_valid_input():
    schema = json.loads((SCHEMAS / "batch_job_input.schema.json").read_text())
    # What a Go or TypeScript caller would send: plain JSON, durations as ISO 8601.
    payload = {
        "input_path": "jobs/2026-11-27.jsonl",
        "endpoint": "/v1/embeddings",
        "poll_interval": "PT2M",
        "deadlines": {"in_progress": "PT30H"},
        "metadata": {"team": "search"},
    }
    jsonschema.validate(payload, schema)
    parsed = BatchJobInput.model_validate_json(json.dumps(payload))
    assert parsed.poll_interval.total_seconds() == 120
    assert parsed.resolved_output_path == "jobs/2026-11-27.output.jsonl"
    bad = {**payload, "unknown_field": 1}
    try:
        jsonschema.validate(bad, schema)
    except jsonschema.ValidationError as exc:
        assert "unknown_field" in exc.message
    else:
        raise AssertionError("the schema must refuse fields the workflow does not know")


def test_a_fan_out_refuses_two_jobs_writing_the_same_results():
    from contracts.job import FanOutInput

    same = {"input_path": "a.jsonl"}
    try:
        FanOutInput.model_validate({"jobs": [same, same]})
    except ValueError as exc:
        assert "two jobs would write a.output.jsonl" in str(exc)
    else:
        raise AssertionError("two children would overwrite each other's results")
    templated = {
        **same,
        "output_path": "{workflow_id}.out.jsonl",
        "errors_path": "{workflow_id}.err.jsonl",
    }
    assert len(FanOutInput.model_validate({"jobs": [templated, templated]}).jobs) == 2


def test_long_workflow_ids_give_job_keys_that_fit_batch_metadata():
    from workflows.batch_job import _job_key

    short = _job_key("nightly", "run-1")
    assert short == "nightly/run-1"
    long_a = _job_key("x" * 600, "run-1")
    long_b = _job_key("x" * 600, "run-2")
    assert len(long_a) <= 200 and long_a != long_b
    assert _job_key("x" * 600, "run-1") == long_a, "stable across retries"
