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
import os
import signal
import subprocess
import sys
import time

from contracts.constants import ENV_WEBHOOK_FALLBACK_POLL
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

    def worker(self) -> None:
        gateway = os.environ.get("GATEWAY_URL", f"http://{LOCALHOST}:{GATEWAY_PORT}")
        worker = WorkerProcess(LOGS / "worker.log", {"GATEWAY_URL": gateway, **self.worker_env})
        self.launch(worker)
        time.sleep(1.0)
        if not worker.running:
            raise SystemExit(f"stack: the worker exited at start; see {worker.log_path}")
        print(f"stack: worker running (log {worker.log_path})", file=sys.stderr)

    def stop(self) -> None:
        for process in reversed(self.procs):
            process.stop(STOP_SECONDS)
            print(f"stack: stopped {process.name}", file=sys.stderr)


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
        stack.worker()
        if command.command == "up":
            print("stack: up; Ctrl-C stops it. Try: python starter.py run examples/batch.jsonl")
            signal.signal(signal.SIGTERM, signal.default_int_handler)
            try:
                while True:
                    time.sleep(3600)
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
