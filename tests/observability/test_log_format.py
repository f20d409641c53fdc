"""LOG_FORMAT=json lines: the ids an operator filters on, and never a secret."""

from __future__ import annotations

import io
import json
import logging
import sys
from pathlib import Path

import pytest

from activities.results import collect_results
from contracts.job import BatchCounts
from gateway.redaction import REDACTED
from gateway.settings import GatewaySettings
from observability.logging import JsonFormatter, TextFormatter, configure_logging

ACTIVITY = {
    "activity_id": "5",
    "activity_type": "collect_results",
    "attempt": 2,
    "namespace": "default",
    "task_queue": "llm-batches",
    "workflow_id": "batch-nightly-1",
    "workflow_run_id": "run-1",
    "workflow_type": "BatchJobWorkflow",
}


def record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    made = logging.LogRecord(
        "temporalio.activity", logging.WARNING, __file__, 1, message, args, None
    )
    made.__dict__.update(extra)
    return made


def test_an_integrity_problem_names_the_request_as_a_field(tmp_path: Path):
    # A completed batch whose output lacks req-1: the real collector's own words.
    output = tmp_path / "out.jsonl"
    output.write_text(
        json.dumps({"custom_id": "req-0", "response": {"status_code": 200, "body": {}}}) + "\n"
    )
    collected = collect_results(
        input_ids={"req-0": 1, "req-1": 2},
        output_file=output,
        error_file=None,
        results_out=io.BytesIO(),
        errors_out=io.BytesIO(),
        not_run_code="batch_cancelled",
        not_run_message="not run",
        batch_counts=BatchCounts(total=2, completed=2),
        batch_completed=True,
    )
    [problem, *_] = collected.problems
    line = json.loads(
        JsonFormatter().format(
            record("batch %s: %s", "batch_abc123def", problem, temporal_activity=ACTIVITY)
        )
    )
    assert line["custom_id"] == "req-1"
    assert line["batch_id"] == "batch_abc123def"
    assert line["workflow_id"] == "batch-nightly-1"
    assert line["activity_type"] == "collect_results"
    assert line["attempt"] == 2
    assert line["level"] == "WARNING"


def test_workflow_lines_carry_the_workflow_ids():
    wf = {"workflow_id": "w-1", "run_id": "r-1", "workflow_type": "BatchJobWorkflow"}
    line = json.loads(JsonFormatter().format(record("cancelling it", temporal_workflow=wf)))
    assert (line["workflow_id"], line["run_id"], line["workflow_type"]) == (
        "w-1",
        "r-1",
        "BatchJobWorkflow",
    )
    assert "batch_id" not in line and "custom_id" not in line


def test_words_like_batch_expired_are_not_taken_for_batch_ids():
    line = json.loads(JsonFormatter().format(record("3 requests ended batch_expired")))
    assert "batch_id" not in line


def test_secrets_are_redacted_in_both_formats():
    env = {
        "GATEWAY_API_KEY": "sk-live-123456",
        "TEMPORAL_API_KEY": "tmprl-key-abcdef",
        "GATEWAY_EXTRA_HEADERS": '{"x-tenant-token": "tenant-secret-9", "x-org": "acm"}',
        "BATCH_CODEC_OLD_KEYS": "old-key-1,old-key-2",
    }
    secrets = GatewaySettings.from_env(env).secret_values()
    leaked = ("sk-live-123456", "tmprl-key-abcdef", "tenant-secret-9", "acm", "old-key-2")
    try:
        raise RuntimeError("401 for key sk-live-123456")
    except RuntimeError:
        exc_info = sys.exc_info()
    leaky = record("sent apikey=%s, temporal %s, tenant %s org %s, codec %s", *leaked)
    leaky.exc_info = exc_info
    for formatter in (JsonFormatter(secrets), TextFormatter(secrets)):
        text = formatter.format(leaky)
        for secret in leaked:
            assert secret not in text
        assert f"org {REDACTED}, codec {REDACTED}" in text


def test_a_secret_that_spells_part_of_the_marker_leaves_the_marker_whole():
    secrets = {"sk-red", "red"}
    text = TextFormatter(secrets).format(record("keys sk-red and red"))
    assert text.endswith(f"keys {REDACTED} and {REDACTED}")


def test_unknown_format_is_refused():
    with pytest.raises(ValueError, match="LOG_FORMAT"):
        configure_logging({"LOG_FORMAT": "xml"}, secrets=())


def test_a_newline_in_an_id_cannot_forge_a_text_log_line():
    forged = "batch_1\n2026-01-01 00:00:00,000 ERROR worker: all keys rotated\x1b[2K"
    text = TextFormatter().format(
        record("created batch %s", forged, custom_id="req\r\nINFO forged too")
    )
    assert "\n" not in text and "\r" not in text and "\x1b" not in text
    assert "created batch batch_1\\n2026-01-01 00:00:00,000 ERROR worker" in text
    assert "custom_id=req\\r\\nINFO forged too" in text


def test_a_traceback_keeps_its_lines_and_a_huge_message_is_cut():
    try:
        raise ValueError("boom")
    except ValueError:
        made = record("x" * 100_000)
        made.exc_info = sys.exc_info()
    text = TextFormatter().format(made)
    first, *rest = text.splitlines()
    assert first.endswith("[cut at 4000 characters]")
    assert rest[0].startswith("Traceback") and rest[-1] == "ValueError: boom"
