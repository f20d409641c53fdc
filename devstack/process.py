"""One child process of the local stack, with its output in a log file.

The child runs in its own session, so a Ctrl-C in the terminal reaches only
the launcher, which then stops the children in its own order.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from types import TracebackType
from typing import IO, Self

REPO_ROOT = Path(__file__).resolve().parents[1]


class ManagedProcess:
    """Start, SIGKILL (as when a machine dies) or stop (SIGTERM, then wait) one command."""

    name = "process"
    stop_timeout = 30.0

    def __init__(self, log_path: Path, env: dict[str, str] | None = None) -> None:
        self.log_path = log_path
        self.env = dict(env or {})
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def environment(self) -> dict[str, str]:
        return {**os.environ, **self.env}

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def spawn(self) -> None:
        if self.running:
            raise RuntimeError(f"{self.name} already running")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            self.command(),
            cwd=REPO_ROOT,
            env=self.environment(),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self) -> None:
        """Return once the process serves; the default does not wait."""

    def start(self) -> Self:
        self.spawn()
        self.wait_ready()
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log().splitlines()[-lines:]) or "(no log)"

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as when a machine dies."""
        if self.running:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)
        self._reap(10.0)

    def stop(self, timeout: float | None = None) -> int | None:
        """SIGTERM, then wait (SIGKILL if it does not exit in ``timeout``); the exit code."""
        if self.running:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGTERM)
        self._reap(self.stop_timeout if timeout is None else timeout)
        return None if self.proc is None else self.proc.returncode

    def _reap(self, timeout: float) -> None:
        if self.proc is not None:
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10.0)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
