"""From a batch id to the job that waits for it, through Temporal's visibility.

A job records its batch in the ``BatchId`` search attribute as soon as it sees
it, so the receiver finds it with a visibility query (shards too: each is a
BatchJobWorkflow of its own). The event may come before that: a batch that
ends within seconds of its create, or visibility lagging. The look-up is
retried for a few seconds; if no job, running or closed, knows the batch and
the event is young, the receiver answers 503 so the provider delivers it again
(both retry for hours); an older event for a batch nobody knows is
acknowledged and logged. The waiting job's fallback poll bounds whatever is
still lost.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import re
import time
from collections.abc import Sequence

from temporalio.client import Client

from contracts.events import BatchEvent
from contracts.names import SEARCH_ATTRIBUTE_BATCH_ID, SIGNAL_BATCH_EVENT, WORKFLOW_NAME

log = logging.getLogger("webhooks")

# Batch ids as the providers spell them; anything else never reaches a query.
BATCH_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,200}$")
LOOKUP_DELAYS = (0.25, 0.5, 1.0, 2.0)
"""Pauses between look-ups of a batch no job has recorded yet (3.75 s in all)."""
RACE_GRACE_SECONDS = 15 * 60.0
"""An event younger than this for a batch nobody knows is asked again (503), not dropped."""


class Delivery(enum.Enum):
    SIGNALLED = "signalled"
    ALREADY_ENDED = "job already ended"
    RETRY_LATER = "no job has recorded the batch yet"
    UNKNOWN = "no job knows the batch"


class JobRelay:
    def __init__(
        self,
        client: Client,
        *,
        lookup_delays: Sequence[float] = LOOKUP_DELAYS,
        race_grace_seconds: float = RACE_GRACE_SECONDS,
    ) -> None:
        self._client = client
        self._delays = lookup_delays
        self._grace = race_grace_seconds

    async def deliver(self, event: BatchEvent, created_at: float | None) -> Delivery:
        if not BATCH_ID.match(event.batch_id):
            return Delivery.UNKNOWN
        for delay in (*self._delays, None):
            running = await self._workflow_ids(event.batch_id, running=True)
            if running:
                for workflow_id in running:
                    await self._client.get_workflow_handle(workflow_id).signal(
                        SIGNAL_BATCH_EVENT, event
                    )
                return Delivery.SIGNALLED
            if delay is not None:
                await asyncio.sleep(delay)
        if await self._workflow_ids(event.batch_id, running=False):
            return Delivery.ALREADY_ENDED
        age = None if created_at is None else time.time() - created_at
        if age is None or age < self._grace:
            return Delivery.RETRY_LATER
        return Delivery.UNKNOWN

    async def _workflow_ids(self, batch_id: str, *, running: bool) -> list[str]:
        query = f"WorkflowType = '{WORKFLOW_NAME}' AND {SEARCH_ATTRIBUTE_BATCH_ID} = '{batch_id}'"
        if running:
            query += " AND ExecutionStatus = 'Running'"
        return [wf.id async for wf in self._client.list_workflows(query, limit=10)]
