"""Job options on the command line become the workflow input, or one clear error."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from cli.app import parser
from cli.exits import UsageError
from cli.job_input import build_input
from contracts.constants import ENV_DATA_DIR


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(ENV_DATA_DIR, str(tmp_path))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in.jsonl").write_text("{}\n")
    return tmp_path


def test_options_become_the_input(data_dir: Path):
    args = parser().parse_args(
        [
            "start",
            "in.jsonl",
            "--metadata",
            "team=catalog",
            "--metadata",
            "note=a=b",
            "--poll-seconds",
            "30",
            "--max-in-progress-hours",
            "2",
            "--output",
            "out/results.jsonl",
        ]
    )
    job = build_input(args)
    assert job.input_path == "in.jsonl"
    assert job.output_path == "out/results.jsonl"
    assert job.metadata == {"team": "catalog", "note": "a=b"}
    assert job.poll_interval == timedelta(seconds=30)
    assert job.deadlines.in_progress == timedelta(hours=2)
    assert job.quota_retry is not None and job.quota_retry.max_wait == timedelta(days=3)


def test_the_quota_wait_is_bounded_as_asked(data_dir: Path):
    job = build_input(parser().parse_args(["start", "in.jsonl", "--max-quota-wait-hours", "6"]))
    assert job.quota_retry is not None and job.quota_retry.max_wait == timedelta(hours=6)


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["start", "missing.jsonl"], "missing.jsonl: no such file"),
        (["start", "in.jsonl", "--metadata", "team"], "--metadata 'team': expected KEY=VALUE"),
        (
            ["start", "in.jsonl", "--max-quota-wait-hours", "0"],
            "--max-quota-wait-hours must be positive, got 0",
        ),
    ],
)
def test_bad_options_are_one_usage_error(data_dir: Path, argv: list[str], error: str):
    with pytest.raises(UsageError) as raised:
        build_input(parser().parse_args(argv))
    assert str(raised.value) == error


def test_a_results_path_outside_the_data_folder_is_refused(data_dir: Path):
    args = parser().parse_args(["start", "in.jsonl", "--output", "/elsewhere/out.jsonl"])
    with pytest.raises(UsageError) as raised:
        build_input(args)
    assert "\n" not in str(raised.value)
    assert "/elsewhere/out.jsonl" in str(raised.value)


@pytest.mark.parametrize("command", ["run", "start", "attach"])
def test_keep_gateway_files_reaches_the_input(data_dir: Path, command: str):
    extra = ["batch_abc"] if command == "attach" else []
    default = build_input(parser().parse_args([command, *extra, "in.jsonl"]))
    kept = build_input(parser().parse_args([command, *extra, "in.jsonl", "--keep-gateway-files"]))
    assert default.keep_gateway_files is False, "deleted by default"
    assert kept.keep_gateway_files is True
