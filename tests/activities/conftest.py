"""Fixtures of the activity tests: a real emulator over HTTP, a real gateway client.

One emulator serves the module (start-up costs about a second) and is handed
back to each test with the baseline knobs; tests that count every file or batch
the emulator holds get a fresh one of their own.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from activities.batch_activities import BatchActivities
from devstack.emulator import EmulatorProcess
from emulator.knobs import Knobs
from gateway.client import GatewayClient
from gateway.settings import GatewaySettings
from storage import LocalStorage
from tests.activities.helpers import ActivityRunner

# An emulated second is 5 ms: validating, finalizing and cancelling take 5 ms each,
# a line 0.25 ms, so a small batch completes in well under a second.
BASELINE: dict[str, object] = {
    "time_scale": 200.0,
    "validating_seconds": 1.0,
    "finalizing_seconds": 1.0,
    "cancelling_seconds": 1.0,
}


def baseline_knobs() -> dict[str, object]:
    return Knobs.model_validate(BASELINE).model_dump()


@pytest.fixture(scope="module")
def shared_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    with EmulatorProcess(tmp_path_factory.mktemp("emulator"), knobs=BASELINE) as emu:
        yield emu


@pytest.fixture
def emu(shared_emulator: EmulatorProcess) -> Iterator[EmulatorProcess]:
    shared_emulator.set_knobs(**baseline_knobs())
    yield shared_emulator
    shared_emulator.set_knobs(**baseline_knobs())


@pytest.fixture
def fresh_emu(tmp_path: Path) -> Iterator[EmulatorProcess]:
    """An emulator holding nothing yet, for tests that count everything it holds."""
    with EmulatorProcess(tmp_path / "fresh-emulator", knobs=BASELINE) as emulator:
        yield emulator


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    root = tmp_path / "data"
    root.mkdir()
    return LocalStorage(root)


def settings_for(emulator: EmulatorProcess, **overrides: object) -> GatewaySettings:
    return GatewaySettings.model_validate(
        {"base_url": emulator.base_url, "timeout_seconds": 10.0, **overrides}
    )


@pytest_asyncio.fixture
async def gateway(emu: EmulatorProcess) -> AsyncIterator[GatewayClient]:
    async with GatewayClient(settings_for(emu)) as client:
        yield client


@pytest.fixture
def acts(gateway: GatewayClient, storage: LocalStorage) -> BatchActivities:
    return BatchActivities(gateway, storage)


@pytest.fixture
def runner() -> ActivityRunner:
    return ActivityRunner()
