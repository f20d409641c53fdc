"""Fixtures of the emulator's own tests.

One emulator process serves the whole module set (start-up costs about a
second); every test gets it back with the baseline knobs, so a test that
injects faults cannot leak them into the next. Tests that need their own
start-up flags or a restart start their own ``EmulatorProcess``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from devstack.emulator import EmulatorProcess
from emulator.knobs import Knobs

# Fast but still observable: 1 emulated second is 10 ms, a line 0.5 ms.
BASELINE = {"time_scale": 100.0}


def baseline_knobs() -> dict[str, object]:
    return Knobs.model_validate(BASELINE).model_dump()


@pytest.fixture(scope="session")
def shared_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    data_dir: Path = tmp_path_factory.mktemp("emulator-shared")
    with EmulatorProcess(data_dir, knobs=BASELINE) as emu:
        yield emu


@pytest.fixture
def emu(shared_emulator: EmulatorProcess) -> Iterator[EmulatorProcess]:
    shared_emulator.set_knobs(**baseline_knobs())
    yield shared_emulator
    shared_emulator.set_knobs(**baseline_knobs())


@pytest.fixture
def client(emu: EmulatorProcess) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=emu.base_url + "/v1", api_key="sk-test", max_retries=0) as c:
        yield c


@pytest.fixture
def http(emu: EmulatorProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=emu.base_url, timeout=10.0) as c:
        yield c
