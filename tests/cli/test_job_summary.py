"""The job's static summary: what the Web UI's list shows for it, in words."""

from __future__ import annotations

import json
from pathlib import Path

from cli.job_summary import input_facts, job_summary
from contracts.job import BatchJobInput


def write(path: Path, lines: list[object]) -> Path:
    path.write_text("".join(json.dumps(line) + "\n" for line in lines) + "\n")
    return path


def test_the_summary_says_how_many_requests_to_which_model_and_where(tmp_path: Path):
    source = write(
        tmp_path / "in.jsonl",
        [{"custom_id": f"r{i}", "body": {"model": "gpt-4o-mini"}} for i in range(1200)],
    )
    requests, model = input_facts(source)
    job = BatchJobInput(input_path="in.jsonl")
    summary, details = job_summary(job, "out/in.output.jsonl", requests, model)
    assert summary == (
        "1,200 requests to gpt-4o-mini · /v1/chat/completions · in.jsonl → in.output.jsonl"
    )
    assert "**results** out/in.output.jsonl" in details


def test_an_input_the_starter_cannot_read_is_summarised_without_counts(tmp_path: Path):
    assert input_facts(None) == (None, None)
    job = BatchJobInput(input_path="s3://bucket/jobs/in.jsonl", batch_id="batch_9")
    summary, details = job_summary(job, "s3://bucket/jobs/out.jsonl", None, None)
    assert summary == "requests · /v1/chat/completions · in.jsonl → out.jsonl, attached to batch_9"
    assert "**requests** ?" in details and "**attached to batch** batch_9" in details
