"""A sharded job checks its whole input before anything is uploaded.

Real processes: the dev server, the emulator, worker.py and starter.py. What a
user checks: the command fails naming the line and custom_id, and the gateway
saw no upload and no batch (nothing was billed).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli.exits import EXIT_FAILED
from tests.cli.test_rerun_attach_cancel import FAST, gateway_batches, starter_now
from tests.e2e.conftest import Stack

pytestmark = pytest.mark.e2e

REQUESTS, PER_BATCH = 60, 20


def with_line(path: Path, number: int, text: str) -> None:
    lines = path.read_text().splitlines()
    lines[number - 1] = text
    path.write_text("\n".join(lines) + "\n")


def gateway_calls(stack: Stack) -> dict[str, int]:
    calls: dict[str, int] = stack.emulator.stats()["api_calls"]
    return {route: n for route, n in calls.items() if route.startswith("POST")}


async def test_a_custom_id_repeated_in_a_later_shard_is_refused_before_any_upload(
    stack: Stack,
) -> None:
    path = stack.write_input("in.jsonl", REQUESTS)
    line_6 = json.loads(path.read_text().splitlines()[5])
    with_line(path, 46, json.dumps({**line_6, "body": {**line_6["body"], "seed": 46}}))
    with stack.worker():
        run = starter_now(stack, "run", str(path), "--max-batch-requests", str(PER_BATCH), *FAST)
    assert run.returncode == EXIT_FAILED, run.stderr
    assert "in.jsonl:46: custom_id='req-5' field 'custom_id': duplicate of line 6" in run.stderr
    assert "nothing was uploaded" in run.stderr
    assert gateway_calls(stack) == {}, "no upload, no batch"
    assert gateway_batches(stack) == []
    assert stack.emulator.successes_by_custom_id("req-") == {}


async def test_a_line_that_is_not_json_in_the_last_shard_is_refused_before_any_batch(
    stack: Stack,
) -> None:
    path = stack.write_input("in.jsonl", REQUESTS)
    with_line(path, 51, '{"custom_id": "req-50", "method": "POST", "url": ')
    with stack.worker():
        run = starter_now(stack, "run", str(path), "--max-batch-requests", str(PER_BATCH), *FAST)
    assert run.returncode == EXIT_FAILED, run.stderr
    assert "in.jsonl:51: not JSON: Expecting value" in run.stderr
    assert gateway_calls(stack) == {}, "no upload, no batch"
    assert gateway_batches(stack) == []

    # Fixed, the same command runs every request once.
    with_line(path, 51, path.read_text().splitlines()[49].replace("req-49", "req-50"))
    with stack.worker():
        again = starter_now(stack, "run", str(path), "--max-batch-requests", str(PER_BATCH), *FAST)
    assert again.returncode == 0, again.stderr
    assert f"requests: {REQUESTS} total, {REQUESTS} succeeded, 0 failed" in again.stdout
    assert len(gateway_batches(stack)) == REQUESTS // PER_BATCH
    assert stack.emulator.successes_by_custom_id("req-") == {
        f"req-{i}": 1 for i in range(REQUESTS)
    }, "each request ran to success in one batch"
