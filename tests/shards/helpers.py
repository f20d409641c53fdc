"""Inputs and per-shard outputs shaped as the gateway and collect_results write them."""

from __future__ import annotations

import json
import random
from collections.abc import Iterable
from pathlib import Path
from typing import Any

CHAT = "/v1/chat/completions"


def request(custom_id: str, content: str = "hello", **body: Any) -> dict[str, Any]:
    return {
        "custom_id": custom_id,
        "method": "POST",
        "url": CHAT,
        "body": {
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": content}],
            **body,
        },
    }


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def ok(
    custom_id: str, prompt: int = 10, completion: int = 5, model: str = "gpt-4o-mini"
) -> dict[str, Any]:
    return {
        "id": f"batch_req_{custom_id}",
        "custom_id": custom_id,
        "response": {
            "status_code": 200,
            "request_id": f"req_{custom_id}",
            "body": {
                "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}}],
                "usage": {
                    "prompt_tokens": prompt,
                    "completion_tokens": completion,
                    "total_tokens": prompt + completion,
                },
            },
        },
        "error": None,
    }


def http_failure(custom_id: str, status: int, code: str | None = None) -> dict[str, Any]:
    kind = "rate_limit_exceeded" if status == 429 else "invalid_request_error"
    return {
        "id": f"batch_req_{custom_id}",
        "custom_id": custom_id,
        "response": {
            "status_code": status,
            "request_id": f"req_{custom_id}",
            "body": {"error": {"message": "failed", "type": kind, "param": None, "code": code}},
        },
        "error": None,
    }


def not_run(custom_id: str, code: str) -> dict[str, Any]:
    return {"custom_id": custom_id, "response": None, "error": {"code": code, "message": "x"}}


def shuffled(rows: list[dict[str, Any]], seed: int = 1) -> list[dict[str, Any]]:
    copy = list(rows)
    random.Random(seed).shuffle(copy)
    return copy
