"""Run the gateway emulator as a real subprocess, for the demo, tests and benchmarks.

``EmulatorProcess`` starts ``python -m emulator`` on 127.0.0.1 and a free port
(or the one given), waits for ``/_emulator/health``, and can kill it
(SIGKILL), restart it on the same port and data directory, or stop it
(SIGTERM). It is synchronous on purpose (httpx sync client), so any caller can
use it, async or not::

    with EmulatorProcess(tmp_path, knobs={"time_scale": 100}) as emu:
        client = openai.OpenAI(base_url=emu.base_url + "/v1", api_key="x")
        emu.set_knobs(error_rate=1.0)

Knobs given at construction become command-line flags (lists joined with
commas, None as ``none``); ``set_knobs`` changes them at run time. A restart
reuses the construction flags only: run-time changes are not persisted.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from devstack.ports import LOCALHOST, free_port
from devstack.process import REPO_ROOT, ManagedProcess


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


def emulator_healthy(base_url: str) -> bool:
    try:
        return httpx.get(base_url + "/_emulator/health", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


class EmulatorProcess(ManagedProcess):
    name = "emulator"
    stop_timeout = 10.0

    def __init__(
        self,
        data_dir: Path | str,
        *,
        port: int | None = None,
        knobs: dict[str, Any] | None = None,
        env: dict[str, str] | None = None,
        startup_timeout: float = 20.0,
        log_path: Path | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        super().__init__(log_path or self.data_dir / "emulator.log", env)
        self.port = port or free_port()
        self.knobs = dict(knobs or {})
        self.startup_timeout = startup_timeout

    @property
    def base_url(self) -> str:
        return f"http://{LOCALHOST}:{self.port}"

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "emulator",
            "--host",
            LOCALHOST,
            "--port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
            *knob_flags(self.knobs),
        ]

    def environment(self) -> dict[str, str]:
        env = super().environment()
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        return env

    def spawn(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        super().spawn()

    def wait_ready(self) -> None:
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

    def successes(self, prefix: str = "", limit: int = 10_000) -> dict[str, Any]:
        """How many batches ran each custom_id to success (GET /_emulator/successes)."""
        with httpx.Client(base_url=self.base_url, timeout=10.0) as http:
            resp = http.get("/_emulator/successes", params={"prefix": prefix, "limit": str(limit)})
            resp.raise_for_status()
            result: dict[str, Any] = resp.json()
            return result

    def successes_by_custom_id(self, prefix: str = "") -> dict[str, int]:
        """custom_id -> how many batches ran it to success; a request billed twice shows 2."""
        counts: dict[str, int] = self.successes(prefix)["by_custom_id"]
        return counts

    def restart(self) -> EmulatorProcess:
        """Start again on the same port and data directory (kill it first if running)."""
        if self.running:
            self.kill()
        return self.start()
