"""What a job writes by default never shows up in `git status` of this repository.

Default results sit beside the input (FILE.output.jsonl, FILE.errors.jsonl; a
sharded job's FILE.output.shards/), so a run of examples/batch.jsonl writes into
examples/: .gitignore keeps those names out of the tracked folders.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from cli.app import parser
from cli.job_input import build_input
from contracts.constants import ENV_BATCH_STORE, ENV_DATA_DIR
from devstack.process import REPO_ROOT


def ignored(path: str) -> bool:
    done = subprocess.run(
        ["git", "check-ignore", "--no-index", "-q", path], cwd=REPO_ROOT, check=False
    )
    return done.returncode == 0


@pytest.mark.parametrize("command", ["run", "start"])
def test_the_default_results_of_the_example_are_ignored_by_git(
    command: str, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.chdir(REPO_ROOT)
    monkeypatch.setenv(ENV_DATA_DIR, str(REPO_ROOT))
    monkeypatch.delenv(ENV_BATCH_STORE, raising=False)
    job = build_input(parser().parse_args([command, "examples/batch.jsonl", "--poll-seconds", "1"]))
    written = [job.resolved_output_path, job.resolved_errors_path]
    assert written == ["examples/batch.output.jsonl", "examples/batch.errors.jsonl"]
    shards = f"{job.resolved_output_path[: -len('.jsonl')]}.shards/shard-0.jsonl"
    for path in [*written, shards, "examples/.batch.output.jsonl.0123456789abcdef.input-index"]:
        assert ignored(path), path
    assert not ignored("examples/batch.jsonl")
    assert Path(REPO_ROOT / "examples/batch.jsonl").is_file()
