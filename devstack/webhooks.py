"""Run the webhook receiver (``python -m webhooks``) as a process; point the emulator at it.

For ``make up``/``make demo``, tests and benchmarks: the receiver listens on
127.0.0.1 and a free port (or the one given), reaches Temporal at the address
given, and verifies with a secret made here unless one is given. ``wire`` tells
a running emulator to post its batch events to it, signed with that secret.
"""

from __future__ import annotations

import base64
import os
import secrets
import sys
import time
from pathlib import Path

import httpx

from devstack.ports import LOCALHOST, free_port
from devstack.process import REPO_ROOT, ManagedProcess

LOCAL_PORT = 8300
FALLBACK_POLL_SECONDS = 1800
"""How rarely the local stack's worker reads a waiting batch, with events to wake it."""


def new_secret() -> str:
    """A whsec_ secret, as the providers hand out."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


class WebhookReceiverProcess(ManagedProcess):
    name = "webhooks"
    stop_timeout = 10.0

    def __init__(
        self,
        log_path: Path,
        temporal_address: str,
        *,
        port: int | None = None,
        secret: str | None = None,
        env: dict[str, str] | None = None,
        startup_timeout: float = 20.0,
    ) -> None:
        self.port = port or free_port()
        self.secret = secret or new_secret()
        super().__init__(
            log_path,
            {
                "TEMPORAL_ADDRESS": temporal_address,
                "WEBHOOK_HOST": LOCALHOST,
                "WEBHOOK_PORT": str(self.port),
                "WEBHOOK_SECRET": self.secret,
                **(env or {}),
            },
        )
        self.startup_timeout = startup_timeout

    @property
    def url(self) -> str:
        return f"http://{LOCALHOST}:{self.port}/webhooks"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "webhooks"]

    def environment(self) -> dict[str, str]:
        env = super().environment()
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        return env

    def wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        health = f"http://{LOCALHOST}:{self.port}/healthz"
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"webhook receiver exited at start-up:\n{self.log_tail()}")
            try:
                if httpx.get(health, timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"webhook receiver not up after {self.startup_timeout}s")

    def wire(self, emulator_url: str) -> None:
        """Have the emulator at ``emulator_url`` post its batch events here."""
        knobs = {"webhook_url": self.url, "webhook_secret": self.secret}
        httpx.patch(f"{emulator_url}/_emulator/knobs", json=knobs, timeout=10.0).raise_for_status()
