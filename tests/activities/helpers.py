"""Builders of JSONL inputs and a runner of activities under Temporal's ActivityEnvironment."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar, get_type_hints

from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import ActivityEnvironment

CHAT = "/v1/chat/completions"
MODEL = "gpt-4o-mini"

Req = TypeVar("Req")
Res = TypeVar("Res")


def chat_line(
    custom_id: str, content: str = "hello", *, model: str = MODEL, url: str = CHAT
) -> dict[str, Any]:
    return {
        "custom_id": custom_id,
        "method": "POST",
        "url": url,
        "body": {"model": model, "messages": [{"role": "user", "content": content}]},
    }


def jsonl(rows: Iterable[dict[str, Any] | list[Any] | str]) -> bytes:
    """One JSON value a line; a str row is written as it is (for broken lines)."""
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows).encode()


def chat_file(n: int, prefix: str = "req") -> bytes:
    return jsonl(chat_line(f"{prefix}-{i}", f"question number {i}") for i in range(n))


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class TemporalHeartbeats:
    """Stands in for the Temporal client's activity handle: records the awaited heartbeats,
    and refuses the ones after the first `accepts` (a server that timed the attempt out)."""

    def __init__(self, accepts: int | None = None, refusal: Exception | None = None) -> None:
        self.sent: list[tuple[Any, ...]] = []
        self.accepts = accepts
        self.refusal = refusal or RuntimeError("activity task not found")

    def get_async_activity_handle(self, *, task_token: bytes) -> TemporalHeartbeats:
        return self

    async def heartbeat(self, *details: Any) -> None:
        if self.accepts is not None and len(self.sent) >= self.accepts:
            raise self.refusal
        self.sent.append(details)


class ActivityRunner:
    """Runs an activity as a worker would: in an activity context, with the project's
    pydantic data converter, its request and result passed through payloads."""

    def __init__(self, client: Any = None) -> None:
        """client: what activity.client() returns (a stand-in for a Temporal client)."""
        self.env = ActivityEnvironment(client)
        self.env.payload_converter = pydantic_data_converter.payload_converter
        self.heartbeats: list[tuple[Any, ...]] = []
        self.env.on_heartbeat = lambda *details: self.heartbeats.append(details)

    async def run(
        self,
        fn: Callable[[Req], Awaitable[Res]],
        request: Req,
        *,
        attempt: int = 1,
        heartbeat_details: Sequence[Any] = (),
    ) -> Res:
        """attempt > 1 runs it as Temporal's retry of an attempt that died or failed, which
        hands it the last heartbeat details of the attempt before (decoded as plain JSON)."""
        self.env.info = dataclasses.replace(
            self.env.info,
            attempt=attempt,
            heartbeat_details=heartbeat_details,
            current_attempt_scheduled_time=datetime.now(UTC),
        )
        converter = self.env.payload_converter
        (sent,) = converter.from_payloads(converter.to_payloads([request]), [type(request)])
        result = await self.env.run(fn, sent)
        returns = get_type_hints(fn)["return"]
        (received,) = converter.from_payloads(converter.to_payloads([result]), [returns])
        return received  # type: ignore[no-any-return]
