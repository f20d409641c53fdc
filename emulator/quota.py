"""The enqueued-token quota: a new batch is refused while unfinished batches hold too many.

Azure (and OpenAI) count the input tokens of every batch that has not ended
against a per-deployment limit; in several Azure regions a create over it
"fails fast": the batch comes back already ``failed`` with
``errors.data[0].code == "token_limit_exceeded"``. The ``http_429`` refusal
answers the create itself with a 429 of that code instead. Tokens are counted
as the built-in model counts a prompt (about four characters a token), once
per input file, and include the new batch's own. ``late_failed`` is OpenAI's
refusal: the create answers ``validating``, and the batch fails at the end of
validation with that code ("Enqueued token limit reached ... Limit: N enqueued
tokens").
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from emulator.clock import wall_now
from emulator.errors import ApiError
from emulator.fake_model import prompt_tokens
from emulator.knobs import Knobs
from emulator.models import BatchRecord
from emulator.scheduler import Scheduler
from emulator.store import Store

REFUSAL_CODE = "token_limit_exceeded"


def _count_file(path: Path, endpoint: str) -> tuple[int, str | None]:
    """Input tokens of every request in the file, and the first model named."""
    total, model = 0, None
    if not path.exists():
        return 0, None
    with path.open("rb") as stream:
        for raw in stream:
            try:
                line: Any = json.loads(raw)
            except ValueError:
                continue
            body = line.get("body") if isinstance(line, dict) else None
            if isinstance(body, dict):
                total += prompt_tokens(endpoint, body)
                if model is None and isinstance(body.get("model"), str):
                    model = body["model"]
    return total, model


class EnqueuedTokens:
    def __init__(self, store: Store, scheduler: Scheduler) -> None:
        self._store = store
        self._scheduler = scheduler
        self._by_file: dict[str, tuple[int, str | None]] = {}
        self._lock = asyncio.Lock()

    async def _tokens(self, file_id: str, endpoint: str) -> tuple[int, str | None]:
        if file_id not in self._by_file:
            path = self._store.blob_path(file_id)
            self._by_file[file_id] = await asyncio.to_thread(_count_file, path, endpoint)
        return self._by_file[file_id]

    async def enqueued(self) -> int:
        """Input tokens of the batches that have not ended."""
        total = 0
        for batch in await self._store.active_batches():
            total += (await self._tokens(batch.input_file_id, batch.endpoint))[0]
        return total

    async def create(self, record: BatchRecord, knobs: Knobs) -> BatchRecord:
        """Start the batch if the quota allows it; else refuse it as the knobs say."""
        limit = knobs.enqueued_token_limit
        assert limit is not None
        async with self._lock:
            own, model = await self._tokens(record.input_file_id, record.endpoint)
            if await self.enqueued() + own <= limit:
                await self._scheduler.create(record)
                return record
            message = (
                f"The number of enqueued tokens has surpassed the configured limit of {limit} "
                f"for the deployment '{model or 'unknown'}'. Please either increase the limit "
                "or try again once the current jobs have finished."
            )
            if knobs.enqueued_token_refusal == "late_failed":
                # Admitted for now; the scheduler fails it once validated (OpenAI's refusal).
                record.forced = "token_limit_exceeded"
                record.model = model
                await self._scheduler.create(record)
                return record
            if knobs.enqueued_token_refusal == "http_429":
                retry = f"{knobs.retry_after_seconds:g}"
                raise ApiError(429, message, code=REFUSAL_CODE, headers={"retry-after": retry})
            record.status = "failed"
            record.failed_at = wall_now()
            record.model = model
            record.errors = [
                {"code": REFUSAL_CODE, "message": message, "param": None, "line": None}
            ]
            await self._store.add_batch(record)
            self._scheduler.ended(record)
            return record
