"""Locations on the command line: URIs untouched, local paths in BATCH_DATA_DIR or BATCH_STORE."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from temporalio.client import ScheduleActionStartWorkflow

from cli.app import parser
from cli.exits import UsageError
from cli.job_input import build_input
from cli.locations import plan_job_files
from cli.schedules import build_schedule
from contracts.constants import ENV_BATCH_STORE, ENV_DATA_DIR

VALID_LINE = (
    '{"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", '
    '"body": {"model": "m", "messages": []}}'
)


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(ENV_DATA_DIR, str(tmp_path))
    monkeypatch.delenv(ENV_BATCH_STORE, raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in.jsonl").write_text(VALID_LINE + "\n")
    return tmp_path


@pytest.mark.parametrize(
    "uri",
    [
        "s3://inputs/day 1/in.jsonl",
        "az://container/jobs/in.jsonl",
        "gs://bucket/in.jsonl",
        "file:///data/in.jsonl",
    ],
)
def test_uris_reach_the_workflow_input_untouched(data_dir: Path, uri: str):
    job = build_input(parser().parse_args(["start", uri, "--output", "s3://results/out.jsonl"]))
    assert job.input_path == uri
    assert job.output_path == "s3://results/out.jsonl"


def test_default_results_of_a_uri_input_sit_beside_it(data_dir: Path):
    job = build_input(parser().parse_args(["start", "az://jobs/day1.jsonl"]))
    assert job.resolved_output_path == "az://jobs/day1.output.jsonl"
    assert job.resolved_errors_path == "az://jobs/day1.errors.jsonl"


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["start", "http://host/in.jsonl"], "unknown scheme 'http'"),
        (["start", "s3://bucket/"], "expected s3://BUCKET/KEY naming one object"),
        (["start", "in.jsonl", "--output", "s3://k:secret@bucket/out.jsonl"], "credentials"),
    ],
)
def test_a_bad_uri_is_one_usage_error_naming_it(data_dir: Path, argv: list[str], error: str):
    with pytest.raises(UsageError, match=error) as raised:
        build_input(parser().parse_args(argv))
    assert "\n" not in str(raised.value)


def test_without_batch_store_local_paths_stay_in_the_data_folder(data_dir: Path):
    files = plan_job_files("in.jsonl", "out/r.jsonl", None, "job-1")
    assert (files.input_path, files.output_path, files.errors_path) == (
        "in.jsonl",
        "out/r.jsonl",
        None,
    )
    assert files.upload is None and files.bring_back == ()


def test_with_batch_store_a_local_job_gets_its_own_folder_there(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv(ENV_BATCH_STORE, "s3://team-bucket/batches/")
    elsewhere = data_dir / "elsewhere"
    elsewhere.mkdir()
    files = plan_job_files("in.jsonl", str(elsewhere / "r.jsonl"), None, "job-1.abcd")
    assert files.input_path == "s3://team-bucket/batches/job-1.abcd/input.jsonl"
    assert files.output_path == "s3://team-bucket/batches/job-1.abcd/output.jsonl"
    assert files.errors_path == "s3://team-bucket/batches/job-1.abcd/errors.jsonl"
    assert files.upload is not None and files.upload.local == data_dir / "in.jsonl"
    assert {(t.local, t.remote) for t in files.bring_back} == {
        (elsewhere / "r.jsonl", files.output_path),
        (data_dir / "in.errors.jsonl", files.errors_path),
    }


def test_with_batch_store_two_jobs_from_one_file_never_share_a_key(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv(ENV_BATCH_STORE, "az://batches")
    args = parser().parse_args(["start", "in.jsonl"])
    first, second = build_input(args), build_input(args)
    keys = {first.input_path, first.resolved_output_path, first.resolved_errors_path}
    assert not keys & {second.input_path, second.resolved_output_path, second.resolved_errors_path}


def test_with_batch_store_uris_still_pass_through(data_dir: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(ENV_BATCH_STORE, "s3://team-bucket/batches")
    files = plan_job_files("gs://in/day.jsonl", None, "s3://out/e.jsonl", "job-2")
    assert (files.input_path, files.output_path, files.errors_path) == (
        "gs://in/day.jsonl",
        None,
        "s3://out/e.jsonl",
    )
    assert files.upload is None and files.bring_back == ()


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ("/mnt/shared", "expected s3://BUCKET/PREFIX"),
        ("s3://", "expected s3://BUCKET/PREFIX"),
        ("s3://AKIA:secret@bucket/x", "credentials and options come from the environment"),
    ],
)
def test_a_bad_batch_store_is_one_usage_error(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, value: str, error: str
):
    monkeypatch.setenv(ENV_BATCH_STORE, value)
    with pytest.raises(UsageError, match=error) as raised:
        plan_job_files("in.jsonl", None, None, "job")
    assert str(raised.value).startswith(f"{ENV_BATCH_STORE}={value}")


def test_results_may_not_overwrite_the_local_input(data_dir: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(ENV_BATCH_STORE, "s3://b/p")
    with pytest.raises(UsageError, match=re.escape("--output in.jsonl: is the input file")):
        plan_job_files("in.jsonl", "in.jsonl", None, "job")


def test_a_schedule_copies_a_local_input_once_and_each_run_writes_its_own_results(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv(ENV_BATCH_STORE, "s3://b/p")
    schedule, files = build_schedule(
        parser().parse_args(["schedule", "create", "nightly", "in.jsonl", "--every", "24h"])
    )
    assert files.upload is not None
    assert isinstance(schedule.action, ScheduleActionStartWorkflow)
    assert schedule.action.args[0].input_path == files.input_path == files.upload.remote
    assert files.input_path.startswith("s3://b/p/schedules/nightly.")
    assert files.output_path == files.input_path.replace(
        "input.jsonl", "input.{workflow_id}.output.jsonl"
    )


def test_a_scheduled_run_under_batch_store_cannot_write_a_local_file(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv(ENV_BATCH_STORE, "s3://b/p")
    argv = ["schedule", "create", "n", "in.jsonl", "--every", "1h", "--output", "r.jsonl"]
    with pytest.raises(UsageError, match="keep their results in the store"):
        build_schedule(parser().parse_args(argv))


def test_results_at_the_input_location_are_one_usage_error(data_dir: Path):
    with pytest.raises(UsageError) as raised:
        build_input(
            parser().parse_args(["start", "s3://b/in.jsonl", "--output", "s3://b/in.jsonl"])
        )
    assert str(raised.value) == "input_path, output_path and errors_path must all differ"
