"""A real Temporal dev server (once per session), a real emulator and worker processes per test."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from devstack.emulator import EmulatorProcess
from devstack.temporal import start_dev_server
from devstack.worker import WorkerProcess

pytestmark = pytest.mark.e2e


@pytest_asyncio.fixture(scope="session")
async def dev_server() -> AsyncIterator[WorkflowEnvironment]:
    env = await start_dev_server()
    try:
        yield env
    finally:
        await env.shutdown()


@dataclass
class Stack:
    client: Client
    address: str
    emulator: EmulatorProcess
    data_dir: Path
    task_queue: str
    logs: Path
    last_log: str = ""
    last_handle: Any = None

    def worker_env(self, **extra: str) -> dict[str, str]:
        return {
            "TEMPORAL_ADDRESS": self.address,
            "TEMPORAL_NAMESPACE": "default",
            "TEMPORAL_TASK_QUEUE": self.task_queue,
            "GATEWAY_URL": self.emulator.base_url,
            "BATCH_DATA_DIR": str(self.data_dir),
            **extra,
        }

    def worker(self, name: str = "worker", **extra: str) -> WorkerProcess:
        return WorkerProcess(self.logs / f"{name}.log", self.worker_env(**extra))

    def write_input(self, name: str, count: int, model: str = "gpt-4o-mini") -> Path:
        path = self.data_dir / name
        with path.open("w") as out:
            for i in range(count):
                out.write(
                    json.dumps(
                        {
                            "custom_id": f"req-{i}",
                            "method": "POST",
                            "url": "/v1/chat/completions",
                            "body": {
                                "model": model,
                                "messages": [{"role": "user", "content": f"Describe item {i}"}],
                            },
                        }
                    )
                    + "\n"
                )
        return path


@pytest.fixture
def stack(dev_server: WorkflowEnvironment, tmp_path: Path) -> Iterator[Stack]:
    data = tmp_path / "data"
    data.mkdir()
    emulator = EmulatorProcess(
        tmp_path / "emulator",
        knobs={"validating_seconds": 0.5, "finalizing_seconds": 0.5, "line_latency_seconds": 0.02},
    )
    with emulator:
        yield Stack(
            client=dev_server.client,
            address=dev_server.client.service_client.config.target_host,
            emulator=emulator,
            data_dir=data,
            task_queue=f"e2e-{uuid.uuid4().hex[:8]}",
            logs=tmp_path / "logs",
        )
