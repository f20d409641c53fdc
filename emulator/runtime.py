"""What every route shares: the knobs in force, the store and the scheduler."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

from fastapi import Depends, Request

from emulator.faults import FaultsMiddleware
from emulator.knobs import Knobs
from emulator.models import BatchRecord
from emulator.quota import EnqueuedTokens
from emulator.scheduler import Scheduler
from emulator.store import Store
from emulator.webhooks import EventSender


class Runtime:
    def __init__(self, data_dir: Path, knobs: Knobs) -> None:
        self.data_dir = data_dir
        self.knobs = knobs
        self.store = Store(data_dir)
        self.scheduler = Scheduler(self.store, lambda: self.knobs)
        self.quota = EnqueuedTokens(self.store, self.scheduler)
        self.webhooks = EventSender(lambda: self.knobs)
        self.scheduler.on_end = self.webhooks.batch_ended
        self.faults: FaultsMiddleware | None = None
        self._late: set[asyncio.Task[None]] = set()

    async def commit(self, record: BatchRecord, knobs: Knobs) -> BatchRecord:
        """Start a new batch, through the enqueued-token quota when one is set."""
        if knobs.enqueued_token_limit is None:
            await self.scheduler.create(record)
            return record
        return await self.quota.create(record, knobs)

    def commit_late(self, record: BatchRecord, knobs: Knobs) -> None:
        """Start the batch of a create answered 504, late_create_seconds from now."""

        async def later() -> None:
            await asyncio.sleep(knobs.late_create_seconds)
            await self.commit(record, knobs)

        task = asyncio.create_task(later())
        self._late.add(task)
        task.add_done_callback(self._late.discard)

    def claim_ambiguous_create(self) -> bool:
        """Take one of the ambiguous_creates still owed; the knob counts down as they happen."""
        left = self.knobs.ambiguous_creates
        if left <= 0:
            return False
        self.knobs = self.knobs.model_copy(update={"ambiguous_creates": left - 1})
        return True

    def claim_late_create(self) -> bool:
        """Take one of the late_creates still owed; the knob counts down as they happen."""
        left = self.knobs.late_creates
        if left <= 0:
            return False
        self.knobs = self.knobs.model_copy(update={"late_creates": left - 1})
        return True

    def claim_refused_read(self) -> bool:
        """Take one of the refused_batch_reads still owed; the knob counts down as they happen."""
        left = self.knobs.refused_batch_reads
        if left <= 0:
            return False
        self.knobs = self.knobs.model_copy(update={"refused_batch_reads": left - 1})
        return True


def runtime(request: Request) -> Runtime:
    rt = request.app.state.runtime
    assert isinstance(rt, Runtime)
    return rt


RuntimeDep = Annotated[Runtime, Depends(runtime)]
