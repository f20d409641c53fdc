"""webhook-ids already handled, remembered long enough to outlive the replay window."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

# A signature is good for 5 minutes either way; a replay after that is refused as stale.
REMEMBER_SECONDS = 15 * 60.0
MAX_REMEMBERED = 100_000


class SeenIds:
    """In memory, per receiver process: a duplicate at another replica costs the job one read."""

    def __init__(
        self,
        *,
        ttl: float = REMEMBER_SECONDS,
        limit: int = MAX_REMEMBERED,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl = ttl
        self._limit = limit
        self._clock = clock
        self._ids: OrderedDict[str, float] = OrderedDict()

    def claim(self, webhook_id: str) -> bool:
        """True the first time (the caller handles it); False for a duplicate."""
        now = self._clock()
        while self._ids and (
            len(self._ids) >= self._limit or next(iter(self._ids.values())) <= now - self._ttl
        ):
            self._ids.popitem(last=False)
        if webhook_id in self._ids:
            return False
        self._ids[webhook_id] = now
        return True

    def release(self, webhook_id: str) -> None:
        """Handling failed: the provider's redelivery must be handled, not called a duplicate."""
        self._ids.pop(webhook_id, None)
