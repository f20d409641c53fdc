"""That a collect step published its results, recorded at Temporal before it deletes anything.

A collect that deletes the job's files at the gateway once its results are
published (patch collect-cleans-up-v1) must not lose them to a retry: a
worker that dies after the delete and before Temporal hears of the result
leaves a retry with nothing to download. So before the first delete the
results are sent in a heartbeat through the client's activity handle and
awaited (activity.heartbeat is buffered and throttled by the worker), and
every later beat of the attempt carries them too. A retry that finds them in
its heartbeat details downloads nothing: it deletes what is left, and returns
them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ValidationError
from temporalio.client import AsyncActivityCancelledError

from activities.heartbeat import heartbeat_at_server
from contracts.steps import CollectedResults


class PublishedResults(BaseModel):
    """collect_results' heartbeat details once its results are published."""

    published: CollectedResults


def published_before(details: Sequence[Any]) -> CollectedResults | None:
    """The results an earlier attempt published and recorded, if it got that far."""
    for detail in details:
        try:
            return PublishedResults.model_validate(detail).published
        except ValidationError:
            continue
    return None


class PublishRecord:
    """The heartbeat details of one collect attempt: nothing, then what it published."""

    def __init__(self, published: CollectedResults | None) -> None:
        self.current = None if published is None else PublishedResults(published=published)

    def details(self) -> PublishedResults | None:
        return self.current

    async def record(self, collected: CollectedResults) -> str | None:
        """Durably at the server before anything is deleted; else why not (delete nothing)."""
        self.current = PublishedResults(published=collected)
        try:
            await heartbeat_at_server(self.current)
        except AsyncActivityCancelledError:
            return "the collect step was being cancelled"
        except Exception as exc:  # any failure: not known to be recorded
            return f"the collect step could not record its results at Temporal: {exc}"
        return None
