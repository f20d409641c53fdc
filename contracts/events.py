"""A batch event as the webhook receiver hands it to the job that waits for the batch."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

BATCH_EVENT_TYPES = frozenset(
    {"batch.completed", "batch.failed", "batch.expired", "batch.cancelled"}
)


class BatchEvent(BaseModel):
    """Only a nudge: the job believes the gateway, not the event, so a forged one costs a read."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    batch_id: str = Field(min_length=1, max_length=200)
    type: str = Field(max_length=100)
    event_id: str = Field(default="", max_length=200)
