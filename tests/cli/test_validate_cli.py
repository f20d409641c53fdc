"""`validate`, `estimate` and `schedule create` check an input before anything is paid for.

starter.py as a user runs it: the lines printed and the exit code. No Temporal
runs here (TEMPORAL_ADDRESS names a closed port): none is needed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cli.app import parser
from devstack.ports import free_port
from devstack.process import REPO_ROOT


def request(custom_id: str | None, **changes: Any) -> dict[str, Any]:
    line: dict[str, Any] = {
        "custom_id": custom_id,
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
    }
    if custom_id is None:
        del line["custom_id"]
    line.update(changes)
    return line


def write(path: Path, *lines: dict[str, Any] | str) -> Path:
    path.write_text(
        "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines)
    )
    return path


def starter(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / "starter.py"), *args],
        cwd=cwd,
        env={
            **os.environ,
            "TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}",
            "BATCH_DATA_DIR": str(cwd),
        },
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def bad_input(tmp_path: Path) -> Path:
    """Two models, a missing custom_id, bad JSON on line 3, a wrong url on line 4."""
    body_m2 = {"model": "gpt-4o", "messages": []}
    return write(
        tmp_path / "bad.jsonl",
        request("a"),
        request(None, body=body_m2),
        '{"custom_id": "c", "method": "POST" "url": "/v1/chat/completions"}',
        request("d", url="/v1/embeddings"),
    )


def test_validate_lists_every_problem_with_file_line_custom_id_field_and_fix(
    tmp_path: Path, bad_input: Path
):
    done = starter(tmp_path, "validate", "bad.jsonl")
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert lines == [
        "bad.jsonl:2: field 'custom_id': missing or not a non-empty string; give each request one",
        "bad.jsonl:3: not JSON: Expecting ',' delimiter at column 37; "
        "each line must be one complete JSON object",
        "bad.jsonl:4: custom_id='d' field 'url': must equal the batch endpoint "
        "'/v1/chat/completions', got '/v1/embeddings'",
        "bad.jsonl: field 'body.model': one model per file, found 2: 'gpt-4o-mini' "
        "(first on line 1), 'gpt-4o' (first on line 2); split the file by model",
        "bad.jsonl: 4 problem(s); nothing was sent",
    ]
    assert done.stdout == ""


def test_validate_of_a_good_file_is_one_line_saying_what_would_run(tmp_path: Path):
    write(tmp_path / "in.jsonl", *(request(f"r{n}") for n in range(5)))
    size = (tmp_path / "in.jsonl").stat().st_size
    done = starter(tmp_path, "validate", "in.jsonl", "--max-batch-requests", "2")
    assert done.returncode == 0, done.stderr
    assert done.stdout == (
        f"in.jsonl: valid: 5 requests, model gpt-4o-mini, endpoint /v1/chat/completions, "
        f"{size:,} bytes, 3 batch(es) (at most 2 requests and 209,715,200 bytes a batch)\n"
    )


def test_validate_infers_the_endpoint_from_lines_that_agree(tmp_path: Path):
    embeddings = {"model": "text-embedding-3-small", "input": "hi"}
    write(
        tmp_path / "emb.jsonl",
        *(request(f"r{n}", url="/v1/embeddings", body=embeddings) for n in range(2)),
    )
    done = starter(tmp_path, "validate", "emb.jsonl")
    assert done.returncode == 0, done.stderr
    assert "endpoint /v1/embeddings" in done.stdout


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("", "empty.jsonl: the file is empty; write one JSON request a line"),
        ("\n", "empty.jsonl:1: blank line; every line must be one request: remove it"),
    ],
)
def test_an_empty_input_is_refused(tmp_path: Path, content: str, problem: str):
    (tmp_path / "empty.jsonl").write_text(content)
    for command in ("validate", "estimate"):
        done = starter(tmp_path, command, "empty.jsonl")
        assert done.returncode == 2
        assert done.stderr.splitlines()[0] == problem


def test_estimate_refuses_an_invalid_file_as_validate_does(tmp_path: Path, bad_input: Path):
    validated = starter(tmp_path, "validate", "bad.jsonl")
    estimated = starter(tmp_path, "estimate", "bad.jsonl")
    assert estimated.returncode == 2
    assert estimated.stderr == validated.stderr
    assert "cost" not in estimated.stdout


def test_schedule_create_refuses_an_input_every_run_would_fail_on(tmp_path: Path, bad_input: Path):
    done = starter(tmp_path, "schedule", "create", "nightly", "bad.jsonl", "--every", "24h")
    assert done.returncode == 2
    assert "bad.jsonl: 4 problem(s); nothing was sent" in done.stderr
    assert "cannot reach Temporal" not in done.stderr


@pytest.mark.parametrize(
    ("cron", "why"),
    [
        ("0 3 * *", "4 field(s); a cron expression has 5"),
        ("61 3 * * *", "minute 61 is out of range 0-59"),
        ("0 3 * * * mon!", "field 'mon!' is not a cron field"),
        ("@sometimes", "unknown shorthand"),
    ],
)
def test_schedule_create_checks_the_cron_here(tmp_path: Path, cron: str, why: str):
    write(tmp_path / "in.jsonl", request("a"))
    done = starter(tmp_path, "schedule", "create", "nightly", "in.jsonl", "--cron", cron)
    assert done.returncode == 2
    assert done.stderr.startswith(f"starter: --cron {cron!r}: {why}")


def test_every_option_says_what_it_does_and_its_default():
    missing = []
    for name, command in _commands(parser()):
        for action in command._actions:
            if not action.option_strings or action.dest == "help":
                continue
            flag = action.option_strings[-1]
            text = action.help or ""
            is_flag = action.nargs == 0
            required = action.required or any(
                action in group._group_actions and group.required
                for group in command._mutually_exclusive_groups
            )
            if not text or not (is_flag or required or "default" in text):
                missing.append(f"{name} {flag}: {text!r}")
    assert missing == []


def test_the_commands_that_read_a_job_or_a_file_describe_themselves():
    described = {name: command.description for name, command in _commands(parser())}
    for name in ("status", "result", "cancel", "list", "estimate", "validate", "attach"):
        assert described[name], name


def _commands(top: Any, prefix: str = "") -> list[tuple[str, Any]]:
    found = []
    for action in top._actions:
        if action.__class__.__name__ == "_SubParsersAction":
            for name, sub in action.choices.items():
                full = f"{prefix}{name}"
                found.append((full, sub))
                found += _commands(sub, f"{full} ")
    return found


def test_schedule_create_help_names_one_default_for_each_runs_results(tmp_path: Path):
    done = starter(tmp_path, "schedule", "create", "--help")
    text = " ".join(done.stdout.split())
    assert done.returncode == 0
    assert "FILE.output.jsonl" not in text and "FILE.errors.jsonl" not in text
    assert "(default FILE.{workflow_id}.output.jsonl)" in text
    assert "(default FILE.{workflow_id}.errors.jsonl)" in text


def test_a_python_without_the_requirements_is_told_the_command_that_works(tmp_path: Path):
    system = shutil.which("python3", path="/usr/bin:/bin")
    if (
        system is None
        or subprocess.run([system, "-c", "import temporalio"], check=False).returncode == 0
    ):
        pytest.skip("no python3 without the requirements on this machine")
    done = subprocess.run(
        [system, "starter.py", "list"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "starter: No module named 'temporalio'. Run it with the project's environment: "
        ".venv/bin/python starter.py ... (make up creates .venv), or activate it first "
        "(source .venv/bin/activate)"
    ]
