"""starter.py as a real process whose output a test can watch while it runs."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

from devstack.process import REPO_ROOT


class StarterProcess:
    def __init__(self, logs: Path, env: dict[str, str], *args: str) -> None:
        logs.mkdir(parents=True, exist_ok=True)
        self.stdout_path = logs / "starter.stdout"
        self.stderr_path = logs / "starter.stderr"
        self._out: IO[bytes] = self.stdout_path.open("wb")
        self._err: IO[bytes] = self.stderr_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "starter.py", *args],
            cwd=REPO_ROOT,
            env={**os.environ, **env},
            stdout=self._out,
            stderr=self._err,
        )

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    async def stderr_shows(self, text: str, within: float = 60) -> str:
        """stderr once it contains text; fails if the starter ends or time runs out first."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if text in self.stderr():
                return self.stderr()
            if self.proc.poll() is not None:
                break
            await asyncio.sleep(0.1)
        raise AssertionError(f"starter stderr never showed {text!r}:\n{self.stderr()}")

    async def exit_code(self, within: float = 120) -> int:
        code = await asyncio.to_thread(self.proc.wait, within)
        self._out.close()
        self._err.close()
        return code

    def interrupt(self) -> None:
        self.proc.send_signal(signal.SIGINT)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self._out.close()
        self._err.close()
