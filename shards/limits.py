"""How large one batch may be, per gateway dialect, and the user's lower settings."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

MIB = 1024 * 1024

# OpenAI: 50,000 requests and 200 MiB per input file. Azure (and Kong's AI Proxy,
# which forwards to Azure): 100,000 requests and 200 MiB.
DIALECT_LIMITS: dict[str, tuple[int, int]] = {
    "openai": (50_000, 200 * MIB),
    "azure": (100_000, 200 * MIB),
    "kong": (100_000, 200 * MIB),
}


class ShardLimits(BaseModel):
    """The most one shard (one batch input file) may hold."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_requests: int = Field(default=50_000, ge=1)
    max_bytes: int = Field(default=200 * MIB, ge=1)

    def full(self, requests: int, size: int, next_line: int) -> bool:
        """Whether a shard of ``requests`` and ``size`` bytes cannot take one more line."""
        return requests >= self.max_requests or size + next_line > self.max_bytes


def limits_for(
    dialect: str, *, max_requests: int | None = None, max_bytes: int | None = None
) -> ShardLimits:
    """The dialect's limits, lowered (or raised) by the user's settings where given.

    Kong's ``max_request_body_size`` is often far below 200 MB: that is what
    ``max_bytes`` is for.
    """
    try:
        requests, size = DIALECT_LIMITS[dialect.lower()]
    except KeyError:
        known = ", ".join(DIALECT_LIMITS)
        raise ValueError(f"unknown gateway dialect {dialect!r}; one of {known}") from None
    return ShardLimits(
        max_requests=requests if max_requests is None else max_requests,
        max_bytes=size if max_bytes is None else max_bytes,
    )
