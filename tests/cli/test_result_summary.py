"""The summary `run` prints at the end says what the job left at the gateway."""

from __future__ import annotations

from datetime import UTC, datetime

from cli.jobs import summarise
from contracts.job import BatchJobResult, GatewayFiles, JobStatus, RequestTally
from contracts.sharding import ShardedJobResult, ShardGatewayFiles


def result(gateway_files: GatewayFiles | None) -> BatchJobResult:
    now = datetime(2026, 11, 30, tzinfo=UTC)
    return BatchJobResult(
        status=JobStatus.SUCCEEDED,
        batch_id="batch_1",
        batch_status="completed",
        input_file_id="file-in",
        output_path="out.jsonl",
        errors_path="err.jsonl",
        requests=RequestTally(total=2, succeeded=2),
        started_at=now,
        finished_at=now,
        gateway_files=gateway_files,
    )


def test_the_summary_counts_deleted_files_and_names_each_one_left():
    files = GatewayFiles(
        deleted=["file-in", "file-out"],
        left={"file-err": "the gateway has no delete route for files (HTTP 404)"},
    )
    lines = summarise(result(files), "http://ui").splitlines()
    assert "gateway:  2 file(s) deleted" in lines
    assert "gateway:  file-err left: the gateway has no delete route for files (HTTP 404)" in lines


def test_a_job_with_no_gateway_files_to_report_prints_no_gateway_line():
    assert "gateway:" not in summarise(result(None), "http://ui")


def test_a_sharded_summary_counts_its_shards_gateway_files_and_names_a_few_left():
    now = datetime(2026, 11, 30, tzinfo=UTC)
    files = ShardGatewayFiles(
        deleted=10, left=7, left_examples={"file-a": "kept on request (keep_gateway_files)"}
    )
    sharded = ShardedJobResult(
        status=JobStatus.SUCCEEDED,
        output_path="out.jsonl",
        errors_path="err.jsonl",
        work_dir="out.shards",
        requests=4,
        succeeded=4,
        failed=0,
        shards=2,
        rounds=1,
        gateway_files=files,
        started_at=now,
        finished_at=now,
    )
    lines = summarise(sharded, "http://ui").splitlines()
    assert "gateway:  10 file(s) deleted, 7 left" in lines
    assert "gateway:  file-a left: kept on request (keep_gateway_files)" in lines
    assert "gateway:  ... and 6 more left" in lines
