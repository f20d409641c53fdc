"""Small builders and waiters shared by the emulator tests."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any

import openai
from openai.types import Batch

CHAT = "/v1/chat/completions"
MODEL = "gpt-4o-mini"


def chat_line(
    custom_id: str, content: str = "hello", *, model: str = MODEL, url: str = CHAT, **extra: Any
) -> dict[str, Any]:
    body = {"model": model, "messages": [{"role": "user", "content": content}], **extra}
    return {"custom_id": custom_id, "method": "POST", "url": url, "body": body}


def jsonl(rows: Iterable[dict[str, Any] | str]) -> bytes:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows).encode()


def chat_file(n: int, prefix: str = "req") -> bytes:
    return jsonl(chat_line(f"{prefix}-{i}", f"question number {i}") for i in range(n))


def upload(client: openai.OpenAI, data: bytes, name: str = "batch.jsonl") -> str:
    return client.files.create(file=(name, data), purpose="batch").id


def submit(client: openai.OpenAI, data: bytes, endpoint: str = CHAT, **kw: Any) -> Batch:
    file_id = upload(client, data)
    return client.batches.create(
        input_file_id=file_id,
        endpoint=endpoint,  # type: ignore[arg-type]
        completion_window="24h",
        **kw,
    )


def wait_for(
    client: openai.OpenAI, batch_id: str, statuses: Iterable[str], timeout: float = 15.0
) -> Batch:
    wanted = set(statuses)
    deadline = time.monotonic() + timeout
    while True:
        batch = client.batches.retrieve(batch_id)
        if batch.status in wanted:
            return batch
        if time.monotonic() > deadline:
            raise AssertionError(f"batch {batch_id} still {batch.status}, wanted {wanted}")
        time.sleep(0.02)


def read_jsonl(client: openai.OpenAI, file_id: str | None) -> list[dict[str, Any]]:
    assert file_id, "expected a file id"
    text = client.files.content(file_id).text
    return [json.loads(line) for line in text.splitlines() if line.strip()]
