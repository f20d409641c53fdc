"""The status of a gateway batch: the one type every layer uses.

It lives with the contracts, the bottom layer, so that the gateway client, the
step contracts and the workflow share it without importing one another.
"""

from __future__ import annotations

from enum import StrEnum


class BatchStatus(StrEnum):
    """A batch's status, the one type every layer uses (gateway, step contracts, workflow).

    Its values are OpenAI's spellings, so it serialises as the plain string it
    always did; a status outside this set is refused where the gateway's
    object is read (see Batch.status).
    """

    VALIDATING = "validating"
    FAILED = "failed"
    IN_PROGRESS = "in_progress"
    FINALIZING = "finalizing"
    COMPLETED = "completed"
    EXPIRED = "expired"
    CANCELLING = "cancelling"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset(
    {BatchStatus.FAILED, BatchStatus.COMPLETED, BatchStatus.EXPIRED, BatchStatus.CANCELLED}
)
