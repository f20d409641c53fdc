"""`make up` keeps its worker up (one that dies is restarted, one that keeps dying stops it),
and tells starters aimed at it to poll its emulator fast."""

from __future__ import annotations

import io
import json
import subprocess
import threading
import time
from pathlib import Path

import pytest

from cli.local_stack import stack_poll_seconds
from devstack import local
from devstack.local import keep_worker_up
from devstack.ports import free_port
from devstack.process import ManagedProcess
from devstack.worker import WorkerProcess
from tests.e2e.conftest import Stack, dev_server, stack

__all__ = ["dev_server", "stack"]

pytestmark = pytest.mark.e2e


def wait_for(check: object, within: float = 60) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if callable(check) and check():
            return
        time.sleep(0.1)
    raise AssertionError("timed out")


def test_a_worker_that_dies_is_reported_and_restarted(stack: Stack):
    out = io.StringIO()
    workers: list[ManagedProcess] = []

    def start() -> ManagedProcess:
        workers.append(stack.worker(f"worker-{len(workers)}").start())
        return workers[-1]

    stopped = threading.Event()
    watching = threading.Thread(
        target=lambda: keep_worker_up(start, out, check_every=0.2, stopped=stopped)
    )
    watching.start()
    try:
        wait_for(lambda: workers and workers[0].running)
        workers[0].kill()
        wait_for(lambda: len(workers) == 2 and workers[1].running)
    finally:
        stopped.set()
        watching.join(timeout=30)
        for worker in workers:
            worker.stop(10)
    said = out.getvalue().splitlines()
    assert said[0].startswith("stack: the worker exited (code -9); last log line: ")
    assert said[1].startswith("stack: restarting the worker (log ")


def test_a_worker_that_keeps_dying_stops_the_stack(tmp_path: Path):
    out = io.StringIO()
    unreachable = {"TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}"}

    def start() -> ManagedProcess:
        return WorkerProcess(tmp_path / "worker.log", unreachable).start()

    code = keep_worker_up(start, out, check_every=0.2, restarts=1)
    said = out.getvalue().splitlines()
    assert code == 1
    assert [line.split(";")[0] for line in said] == [
        "stack: the worker exited (code 2)",
        "stack: restarting the worker (log " + str(tmp_path / "worker.log") + ")",
        "stack: the worker exited (code 2)",
        "stack: the worker died 2 times in 10 min",
    ]


def test_while_up_the_stack_tells_its_starters_to_poll_fast(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    marker = tmp_path / "stack.json"
    monkeypatch.setattr(local, "STACK_FILE", marker)
    monkeypatch.delenv("GATEWAY_URL", raising=False)
    monkeypatch.setenv("TEMPORAL_ADDRESS", f"127.0.0.1:{local.TEMPORAL_PORT}")
    stack = local.LocalStack()
    stack.say_up()
    assert stack_poll_seconds(marker) == 1.0
    monkeypatch.setenv("TEMPORAL_ADDRESS", "temporal.example.com:7233")
    assert stack_poll_seconds(marker) is None  # another Temporal: its jobs keep the default
    monkeypatch.setenv("TEMPORAL_ADDRESS", f"localhost:{local.TEMPORAL_PORT}")
    stack.say_down()
    assert stack_poll_seconds(marker) is None


def test_a_stack_that_died_without_cleaning_up_is_not_believed(tmp_path: Path):
    marker = tmp_path / "stack.json"
    dead = subprocess.Popen(["true"])
    dead.wait()
    marker.write_text(
        json.dumps({"pid": dead.pid, "temporal_address": "localhost:7233", "poll_seconds": 1})
    )
    assert stack_poll_seconds(marker) is None
