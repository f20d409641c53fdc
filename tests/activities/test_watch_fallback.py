"""With batch events (WEBHOOK_FALLBACK_POLL_SECONDS), a watch reads its batch that rarely."""

from __future__ import annotations

import asyncio
import time

import pytest

from activities.batch_activities import BatchActivities
from devstack.emulator import EmulatorProcess
from gateway.client import GatewayClient
from storage import LocalStorage
from tests.activities.helpers import ActivityRunner, chat_file
from tests.activities.test_batch_activities import Job
from tests.activities.test_watch import watch_request
from worker import fallback_poll_seconds


def batch_reads(emu: EmulatorProcess) -> int:
    return int(emu.stats()["api_calls"].get("GET /batches/{id}", 0))


async def test_a_watch_reads_its_batch_once_a_fallback_interval(
    runner: ActivityRunner, gateway: GatewayClient, storage: LocalStorage, emu: EmulatorProcess
) -> None:
    emu.set_knobs(force_outcome="stuck_validating")
    polling = BatchActivities(gateway, storage)
    batch = await Job(runner, polling, storage, key=f"fallback-{time.time_ns()}").submit(
        chat_file(2)
    )

    before = batch_reads(emu)
    polled = await runner.run(polling.watch_batch, watch_request(batch, within=0.5))
    assert polled.polls > 3, "without events: a read every poll interval"
    assert batch_reads(emu) - before == polled.polls

    hearing = BatchActivities(gateway, storage, fallback_poll_seconds=3600)
    before = batch_reads(emu)
    with pytest.raises(TimeoutError):
        # Past its return time it still sleeps until its next read, an hour away.
        await asyncio.wait_for(runner.run(hearing.watch_batch, watch_request(batch, within=0.5)), 2)
    assert batch_reads(emu) - before == 1, "with events: one read, the next at the fallback"


def test_the_fallback_interval_is_read_from_the_environment() -> None:
    assert fallback_poll_seconds({}) is None
    assert fallback_poll_seconds({"WEBHOOK_FALLBACK_POLL_SECONDS": " "}) is None
    assert fallback_poll_seconds({"WEBHOOK_FALLBACK_POLL_SECONDS": "1800"}) == 1800.0
    for bad in ("0", "-5", "soon", "nan"):
        with pytest.raises(ValueError, match="WEBHOOK_FALLBACK_POLL_SECONDS"):
            fallback_poll_seconds({"WEBHOOK_FALLBACK_POLL_SECONDS": bad})
