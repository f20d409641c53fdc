"""The embedded default: a Temporal dev server, the gateway emulator and a worker on this machine.

    python -m scripts.stack demo   start all three, run examples/batch.jsonl, stop them
    python -m scripts.stack up     start all three and keep them up until Ctrl-C

State lives under .local/ (the dev server's SQLite database, the emulator's
data, logs). A Temporal server or emulator already listening on its port is
reused, not started twice.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from contracts.names import SEARCH_ATTRIBUTES
from temporal_client import connect, register_search_attributes

ROOT = Path(__file__).resolve().parents[1]
LOCAL = ROOT / ".local"
LOGS = LOCAL / "logs"
TEMPORAL_PORT = 7233
UI_PORT = 8233
GATEWAY_PORT = 8000
BIN = Path(sys.executable).parent


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def wait_until(check: Callable[[], bool], what: str, timeout: float, log: Path | None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    hint = f"; see {log}" if log else ""
    raise SystemExit(f"stack: {what} did not come up within {timeout:.0f}s{hint}")


class Stack:
    def __init__(self) -> None:
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []
        LOGS.mkdir(parents=True, exist_ok=True)

    def spawn(self, name: str, cmd: list[str], env: dict[str, str] | None = None) -> Path:
        log = LOGS / f"{name}.log"
        with log.open("ab") as out:
            proc = subprocess.Popen(
                cmd,
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, **(env or {})},
                start_new_session=True,
            )
        self.procs.append((name, proc))
        return log

    def temporal(self) -> None:
        if port_open(TEMPORAL_PORT):
            print(f"stack: reusing the Temporal server on :{TEMPORAL_PORT}", file=sys.stderr)
        else:
            (LOCAL / "temporal").mkdir(parents=True, exist_ok=True)
            attrs = [f"--search-attribute={n}={t}" for n, t in SEARCH_ATTRIBUTES.items()]
            log = self.spawn(
                "temporal",
                [
                    str(BIN / "temporal"),
                    "server",
                    "start-dev",
                    "--ip=127.0.0.1",
                    f"--port={TEMPORAL_PORT}",
                    f"--ui-port={UI_PORT}",
                    f"--db-filename={LOCAL / 'temporal' / 'dev.db'}",
                    "--log-level=warn",
                    *attrs,
                ],
            )
            wait_until(lambda: port_open(TEMPORAL_PORT), "the Temporal dev server", 60, log)

        async def register() -> None:
            await register_search_attributes(await connect())

        asyncio.run(register())
        print(
            f"stack: Temporal on :{TEMPORAL_PORT}, Web UI http://localhost:{UI_PORT}",
            file=sys.stderr,
        )

    def emulator(self) -> None:
        health = f"http://127.0.0.1:{GATEWAY_PORT}/_emulator/health"

        def healthy() -> bool:
            try:
                return httpx.get(health, timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        if port_open(GATEWAY_PORT):
            if not healthy():
                raise SystemExit(
                    f"stack: port {GATEWAY_PORT} is taken by something that is not the emulator; "
                    "stop it, or run the worker yourself with GATEWAY_URL set"
                )
            print(f"stack: reusing the emulator on :{GATEWAY_PORT}", file=sys.stderr)
            return
        log = self.spawn(
            "emulator",
            [
                sys.executable,
                "-m",
                "emulator",
                "--host=127.0.0.1",
                f"--port={GATEWAY_PORT}",
                f"--data-dir={LOCAL / 'emulator'}",
            ],
        )
        wait_until(healthy, "the gateway emulator", 30, log)
        print(f"stack: gateway emulator on http://127.0.0.1:{GATEWAY_PORT}", file=sys.stderr)

    def worker(self) -> None:
        log = self.spawn(
            "worker",
            [sys.executable, "worker.py"],
            env={"GATEWAY_URL": os.environ.get("GATEWAY_URL", f"http://127.0.0.1:{GATEWAY_PORT}")},
        )
        time.sleep(1.0)
        if self.procs[-1][1].poll() is not None:
            raise SystemExit(f"stack: the worker exited at start; see {log}")
        print(f"stack: worker running (log {log})", file=sys.stderr)

    def stop(self) -> None:
        for name, proc in reversed(self.procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=25)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
            print(f"stack: stopped {name}", file=sys.stderr)


def main() -> int:
    args = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    args.add_argument("command", choices=("demo", "up"))
    args.add_argument("--input", default="examples/batch.jsonl")
    args.add_argument("--output", default="batched-response.jsonl")
    args.add_argument("--errors", default="batched-errors.jsonl")
    command = args.parse_args()
    stack = Stack()
    try:
        stack.temporal()
        stack.emulator()
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
            cwd=ROOT,
            check=False,
        )
        if run.returncode == 0:
            print(f"stack: wrote {command.output}", file=sys.stderr)
        return run.returncode
    finally:
        stack.stop()


if __name__ == "__main__":
    sys.exit(main())
