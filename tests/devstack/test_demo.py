"""`make demo`'s own command, as a newcomer runs it: the fixed ports of the embedded default."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

import pytest

from devstack.local import GATEWAY_PORT, TEMPORAL_PORT, UI_PORT
from devstack.ports import port_open
from devstack.process import REPO_ROOT

pytestmark = pytest.mark.e2e


def test_the_demo_runs_the_example_batch_and_says_nothing_misleading() -> None:
    taken = [port for port in (TEMPORAL_PORT, UI_PORT, GATEWAY_PORT) if port_open(port)]
    if taken:
        pytest.skip(f"ports {taken} are taken (a `make up` running?): the demo would reuse them")
    # Inside the checkout, as the demo's own results are (BATCH_DATA_DIR is the repository).
    run = f".local/demo-test-{uuid.uuid4().hex[:8]}"
    output, errors = REPO_ROOT / f"{run}.output.jsonl", REPO_ROOT / f"{run}.errors.jsonl"
    command = ["-m", "scripts.stack", "demo", f"--output={run}.output.jsonl"]
    demo = subprocess.run(
        [sys.executable, *command, f"--errors={run}.errors.jsonl"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    try:
        assert demo.returncode == 0, demo.stderr
        results = [json.loads(line) for line in output.read_text().splitlines()]
        assert errors.read_text() == ""
    finally:
        output.unlink(missing_ok=True)
        errors.unlink(missing_ok=True)
    assert "no worker is polling" not in demo.stderr, "the stack's own worker was not ready"
    assert "status:   succeeded" in demo.stdout
    with (REPO_ROOT / "examples" / "batch.jsonl").open() as requests:
        assert [r["custom_id"] for r in results] == [
            json.loads(line)["custom_id"] for line in requests
        ]
    assert not any(port_open(port) for port in (TEMPORAL_PORT, GATEWAY_PORT)), "left running"
