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
