"""The embedded default: a Temporal dev server, the gateway emulator and a worker on this machine.

    python -m scripts.stack demo   start all three, run examples/batch.jsonl, stop them
    python -m scripts.stack up     start all three and keep them up until Ctrl-C

State lives under .local/ (the dev server's SQLite database, the emulator's
data, logs). A Temporal server or emulator already listening on its port is
reused, not started twice. With the local emulator, a webhook receiver on :8300
relays its batch events, so a job hears its batch end at once (devstack.webhooks).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import TextIO

from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

from contracts.constants import ENV_TASK_QUEUE, ENV_WEBHOOK_FALLBACK_POLL, LOCAL_STACK_FILE
from contracts.names import TASK_QUEUE
from devstack.emulator import EmulatorProcess, emulator_healthy
from devstack.ports import LOCALHOST, port_open
from devstack.process import REPO_ROOT, ManagedProcess
from devstack.temporal import DevServerProcess
from devstack.webhooks import FALLBACK_POLL_SECONDS, LOCAL_PORT, WebhookReceiverProcess
from devstack.worker import WorkerProcess
from temporal_client import connect, register_search_attributes

LOCAL = REPO_ROOT / ".local"
LOGS = LOCAL / "logs"
TEMPORAL_PORT = 7233
UI_PORT = 8233
GATEWAY_PORT = 8000
STOP_SECONDS = 25.0
STACK_FILE = REPO_ROOT / LOCAL_STACK_FILE
STACK_POLL_SECONDS = 1.0
"""The emulator answers at once: its jobs read their batch every second, not every minute."""
WORKER_CHECK_SECONDS = 2.0
WORKER_RESTARTS = 3
"""Restarts of a worker that died, within RESTART_WINDOW_SECONDS, before the stack gives up."""
RESTART_WINDOW_SECONDS = 600.0
WORKER_START_SECONDS = 60.0


def keep_worker_up(
    start: Callable[[], ManagedProcess],
    out: TextIO,
    *,
    check_every: float = WORKER_CHECK_SECONDS,
    restarts: int = WORKER_RESTARTS,
    window: float = RESTART_WINDOW_SECONDS,
    stopped: threading.Event | None = None,
) -> int:
    """Watch the worker; one that died is said, with its log's last line, and started again.

    A worker that dies more than ``restarts`` times within ``window`` seconds is
    not restarted again: the stack says so and returns 1 (it stops). Returns 0
    when ``stopped`` is set.
    """
    stopped = stopped or threading.Event()
    worker = start()
    deaths: list[float] = []
    while not stopped.wait(check_every):
        if worker.running:
            continue
        code = worker.proc.returncode if worker.proc is not None else None
        worker.stop(0)
        last = worker.log_tail(1)
        now = time.monotonic()
        deaths = [t for t in deaths if now - t < window] + [now]
        print(f"stack: the worker exited (code {code}); last log line: {last}", file=out)
        if len(deaths) > restarts:
            print(
                f"stack: the worker died {len(deaths)} times in {window / 60:g} min; stopping "
                f"the stack (log {worker.log_path})",
                file=out,
                flush=True,
            )
            return 1
        print(f"stack: restarting the worker (log {worker.log_path})", file=out, flush=True)
        worker = start()
    return 0


class LocalStack:
    """The processes this launcher started, stopped in reverse order."""

    def __init__(self) -> None:
        self.procs: list[ManagedProcess] = []
        self.worker_env: dict[str, str] = {}
        LOGS.mkdir(parents=True, exist_ok=True)

    def launch(self, process: ManagedProcess) -> None:
        self.procs.append(process)
        try:
            process.start()
        except RuntimeError as exc:
            raise SystemExit(f"stack: {exc}; see {process.log_path}") from None

    def temporal(self) -> None:
        if port_open(TEMPORAL_PORT):
            print(f"stack: reusing the Temporal server on :{TEMPORAL_PORT}", file=sys.stderr)
        else:
            server = DevServerProcess(
                port=TEMPORAL_PORT,
                ui_port=UI_PORT,
                db_file=LOCAL / "temporal" / "dev.db",
                log_path=LOGS / "temporal.log",
            )
            self.launch(server)

        async def register() -> None:
            await register_search_attributes(await connect())

        asyncio.run(register())
        print(
            f"stack: Temporal on :{TEMPORAL_PORT}, Web UI http://localhost:{UI_PORT}",
            file=sys.stderr,
        )

    def emulator(self) -> None:
        if port_open(GATEWAY_PORT):
            if not emulator_healthy(f"http://{LOCALHOST}:{GATEWAY_PORT}"):
                raise SystemExit(
                    f"stack: port {GATEWAY_PORT} is taken by something that is not the emulator; "
                    "stop it, or run the worker yourself with GATEWAY_URL set"
                )
            print(f"stack: reusing the emulator on :{GATEWAY_PORT}", file=sys.stderr)
            return
        emulator = EmulatorProcess(
            LOCAL / "emulator",
            port=GATEWAY_PORT,
            startup_timeout=30.0,
            log_path=LOGS / "emulator.log",
        )
        self.launch(emulator)
        print(f"stack: gateway emulator on {emulator.base_url}", file=sys.stderr)

    def webhooks(self) -> None:
        """The emulator's batch events through a receiver: a job hears its batch end at once."""
        if "GATEWAY_URL" in os.environ or port_open(LOCAL_PORT):
            return
        receiver = WebhookReceiverProcess(
            LOGS / "webhooks.log", f"{LOCALHOST}:{TEMPORAL_PORT}", port=LOCAL_PORT
        )
        self.launch(receiver)
        receiver.wire(f"http://{LOCALHOST}:{GATEWAY_PORT}")
        self.worker_env[ENV_WEBHOOK_FALLBACK_POLL] = str(FALLBACK_POLL_SECONDS)
        print(f"stack: batch events to {receiver.url}", file=sys.stderr)

    def worker(self) -> WorkerProcess:
        gateway = os.environ.get("GATEWAY_URL", f"http://{LOCALHOST}:{GATEWAY_PORT}")
        worker = WorkerProcess(LOGS / "worker.log", {"GATEWAY_URL": gateway, **self.worker_env})
        self.launch(worker)
        deadline = time.monotonic() + WORKER_START_SECONDS
        while not asyncio.run(_worker_polls()):
            if not worker.running:
                raise SystemExit(f"stack: the worker exited at start; see {worker.log_path}")
            if time.monotonic() > deadline:
                raise SystemExit(
                    f"stack: the worker did not poll within {WORKER_START_SECONDS:.0f} s; "
                    f"see {worker.log_path}"
                )
            time.sleep(0.25)
        print(f"stack: worker running (log {worker.log_path})", file=sys.stderr)
        return worker

    def say_up(self) -> None:
        """Write LOCAL_STACK_FILE: starters aimed at this Temporal poll the emulator fast."""
        if "GATEWAY_URL" in os.environ:
            return  # a gateway of the user's: its own poll interval applies
        STACK_FILE.write_text(
            json.dumps(
                {
                    "pid": os.getpid(),
                    "temporal_address": f"localhost:{TEMPORAL_PORT}",
                    "poll_seconds": STACK_POLL_SECONDS,
                }
            )
        )

    def say_down(self) -> None:
        STACK_FILE.unlink(missing_ok=True)

    def stop(self) -> None:
        self.say_down()
        for process in reversed(self.procs):
            process.stop(STOP_SECONDS)
            print(f"stack: stopped {process.name}", file=sys.stderr)


def _python() -> str:
    """This interpreter as typed from the repository: .venv/bin/python, not a bare python."""
    relative = os.path.relpath(os.path.abspath(sys.executable), REPO_ROOT)
    return relative if not relative.startswith("..") else sys.executable


async def _worker_polls() -> bool:
    """Whether a worker polls the job's task queue, so the first job never waits for one."""
    client = await connect()
    queue = os.environ.get(ENV_TASK_QUEUE, TASK_QUEUE)
    described = await client.workflow_service.describe_task_queue(
        DescribeTaskQueueRequest(
            namespace=client.namespace,
            task_queue=TaskQueue(name=queue),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
        )
    )
    return bool(described.pollers)


def main() -> int:
    args = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    args.add_argument("command", choices=("demo", "up"))
    args.add_argument("--input", default="examples/batch.jsonl")
    args.add_argument("--output", default="batched-response.jsonl")
    args.add_argument("--errors", default="batched-errors.jsonl")
    command = args.parse_args()
    stack = LocalStack()
    try:
        stack.temporal()
        stack.emulator()
        stack.webhooks()
        worker = stack.worker()
        if command.command == "up":
            stack.say_up()
            print(
                "stack: up; Ctrl-C stops it; the worker is restarted if it dies. Try: "
                f"{_python()} starter.py run examples/batch.jsonl"
            )
            signal.signal(signal.SIGTERM, signal.default_int_handler)
            started = [worker]

            def restart() -> ManagedProcess:
                if started:
                    return started.pop()
                again = WorkerProcess(worker.log_path, worker.env)
                stack.launch(again)
                return again

            try:
                return keep_worker_up(restart, sys.stderr)
            except KeyboardInterrupt:
                return 0
        run = subprocess.run(
            [
                sys.executable,
                "starter.py",
                "run",
                command.input,
                f"--output={command.output}",
                f"--errors={command.errors}",
                "--poll-seconds=1",
            ],
            cwd=REPO_ROOT,
            check=False,
        )
        if run.returncode == 0:
            print(f"stack: wrote {command.output}", file=sys.stderr)
        return run.returncode
    finally:
        stack.stop()
