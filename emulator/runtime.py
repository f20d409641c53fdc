"""What every route shares: the knobs in force, the store and the scheduler."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import Depends, Request

from emulator.faults import FaultsMiddleware
from emulator.knobs import Knobs
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

    def claim_ambiguous_create(self) -> bool:
        """Take one of the ambiguous_creates still owed; the knob counts down as they happen."""
        left = self.knobs.ambiguous_creates
        if left <= 0:
            return False
        self.knobs = self.knobs.model_copy(update={"ambiguous_creates": left - 1})
        return True


def runtime(request: Request) -> Runtime:
    rt = request.app.state.runtime
    assert isinstance(rt, Runtime)
    return rt


RuntimeDep = Annotated[Runtime, Depends(runtime)]
