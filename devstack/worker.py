"""Run worker.py as a real process, so a test can SIGKILL it mid-step and start another."""

from __future__ import annotations

import sys
from pathlib import Path

from devstack.process import REPO_ROOT, ManagedProcess


class WorkerProcess(ManagedProcess):
    name = "worker"

    def __init__(self, log_path: Path, env: dict[str, str]) -> None:
        super().__init__(log_path, env)

    def command(self) -> list[str]:
        return [sys.executable, str(REPO_ROOT / "worker.py")]
