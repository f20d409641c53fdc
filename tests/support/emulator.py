"""Run the emulator as a real subprocess, for tests of every package.

``EmulatorProcess`` starts ``python -m emulator`` on 127.0.0.1 and a free port,
waits for ``/_emulator/health``, and can kill it (SIGKILL), restart it on the
same port and data directory, or stop it (SIGTERM). It is synchronous on
purpose (httpx sync client), so any test can use it, async or not::

    with EmulatorProcess(tmp_path, knobs={"time_scale": 100}) as emu:
        client = openai.OpenAI(base_url=emu.base_url + "/v1", api_key="x")
        emu.set_knobs(error_rate=1.0)

Knobs given at construction become command-line flags (lists joined with
commas, None as ``none``); ``set_knobs`` changes them at run time. A restart
reuses the construction flags only: run-time changes are not persisted.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import httpx

REPO_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def knob_flags(knobs: dict[str, Any]) -> list[str]:
    flags: list[str] = []
    for name, value in knobs.items():
        if isinstance(value, list | tuple):
            text = ",".join(str(v) for v in value)
        elif value is None:
            text = "none"
        else:
            text = str(value)
        flags += ["--" + name.replace("_", "-"), text]
    return flags


class EmulatorProcess:
    def __init__(
        self,
        data_dir: Path | str,
        *,
        port: int | None = None,
        knobs: dict[str, Any] | None = None,
        env: dict[str, str] | None = None,
        startup_timeout: float = 20.0,
    ) -> None:
        self.data_dir = Path(data_dir)
        self.port = port or free_port()
        self.knobs = dict(knobs or {})
        self.env = dict(env or {})
        self.startup_timeout = startup_timeout
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir / "emulator.log"

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "emulator",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
            *knob_flags(self.knobs),
        ]

    def start(self) -> EmulatorProcess:
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError("emulator already running")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        env = {**os.environ, **self.env}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        self.proc = subprocess.Popen(
            self.command(), cwd=REPO_ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT
        )
        self._wait_healthy()
        return self

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        with httpx.Client(timeout=1.0) as http:
            while time.monotonic() < deadline:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    raise RuntimeError(f"emulator exited at start-up:\n{self.log_tail()}")
                try:
                    if http.get(self.base_url + "/_emulator/health").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                time.sleep(0.05)
        self.kill()
        raise RuntimeError(
            f"emulator not healthy after {self.startup_timeout}s:\n{self.log_tail()}"
        )

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def _admin(self, method: str, path: str, json: Any = None) -> Any:
        with httpx.Client(base_url=self.base_url, timeout=10.0) as http:
            resp = http.request(method, "/_emulator" + path, json=json)
            resp.raise_for_status()
            return resp.json()

    def set_knobs(self, **knobs: Any) -> dict[str, Any]:
        """PATCH the running emulator's knobs; returns all knobs after the change."""
        result: dict[str, Any] = self._admin("PATCH", "/knobs", knobs)
        return result

    def get_knobs(self) -> dict[str, Any]:
        result: dict[str, Any] = self._admin("GET", "/knobs")
        return result

    def force(self, batch_id: str, outcome: str) -> dict[str, Any]:
        result: dict[str, Any] = self._admin(
            "POST", f"/batches/{batch_id}/force", {"outcome": outcome}
        )
        return result

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = self._admin("GET", "/stats")
        return result

    def _reap(self, timeout: float) -> None:
        if self.proc is not None:
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=timeout)
        if self._log is not None:
            self._log.close()
            self._log = None

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as when a machine dies."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self._reap(10.0)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then wait (SIGKILL if it does not exit in ``timeout``)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        self._reap(timeout)

    def restart(self) -> EmulatorProcess:
        """Start again on the same port and data directory (kill it first if running)."""
        if self.proc is not None and self.proc.poll() is None:
            self.kill()
        return self.start()

    def __enter__(self) -> EmulatorProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
