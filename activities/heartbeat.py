"""Heartbeats while a long transfer runs, so a dead worker is noticed in seconds, not hours.

The first beat goes out a beat interval after the start, not at once: the heartbeat
timeout runs from the attempt's start anyway, and a step that ends sooner (most
do) then costs Temporal no heartbeat call at all.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from temporalio import activity


@contextlib.asynccontextmanager
async def heartbeating(details: Callable[[], Any] | None = None) -> AsyncIterator[None]:
    timeout = activity.info().heartbeat_timeout
    every = 5.0 if timeout is None else max(0.2, min(5.0, timeout.total_seconds() / 3))

    async def beat() -> None:
        while True:
            await asyncio.sleep(every)
            activity.heartbeat(*(() if details is None else (details(),)))

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def heartbeat_at_server(details: Any) -> bool:
    """Beat ``details`` and wait until Temporal has them; False where no server runs.

    ``activity.heartbeat`` is buffered and throttled by the worker; this goes
    through the client's handle of this attempt, so once it returns the details
    are what a retry of the attempt will be handed. The handle's errors (a cancel
    of the attempt, an attempt Temporal no longer knows) are raised.
    """
    activity.heartbeat(details)
    try:
        client = activity.client()
    except RuntimeError:
        return False  # ActivityEnvironment: there is no server to reach
    handle = client.get_async_activity_handle(task_token=activity.info().task_token)
    await handle.heartbeat(details)
    return True
