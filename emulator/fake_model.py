"""The built-in deterministic model.

It answers chat completion, completion, embedding and responses requests with
bodies shaped like the real ones and a plausible ``usage``. Everything in a body
is derived from a hash of the request, so the same request always gets the same
answer, except ``created``, which is the time the line ran.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import time
from dataclasses import dataclass
from typing import Any

from emulator.errors import error_body

_WORDS = (
    "batch queue token model answer durable workflow retry signal window output request "
    "line gateway latency shard merge result summary detail context prompt value record "
    "emulated steady careful quick plain simple clear brief useful honest"
).split()

DEFAULT_EMBEDDING_DIMENSIONS = 64


@dataclass(frozen=True)
class ModelAnswer:
    status: int
    body: dict[str, Any]
    input_tokens: int = 0
    output_tokens: int = 0


def _digest(body: dict[str, Any]) -> bytes:
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).digest()


def _tokens(text: str) -> int:
    return max(1, math.ceil(len(text) / 4)) if text else 0


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            str(part.get("text", "")) if isinstance(part, dict) else str(part) for part in content
        )
    return "" if content is None else str(content)


def _reply(rng: random.Random, prompt: str, limit: int | None) -> tuple[str, int, str]:
    """Words of the answer, how many tokens they count for, and why it stopped."""
    snippet = " ".join(prompt.split()[:8])
    words = [f"Emulated answer to: {snippet}."] if snippet else ["Emulated answer."]
    words += [rng.choice(_WORDS) for _ in range(rng.randint(8, 40))]
    count = len(words) + len(snippet.split())
    if limit is not None and limit < count:
        text = " ".join(" ".join(words).split()[: max(limit, 1)])
        return text, max(limit, 1), "length"
    return " ".join(words), count, "stop"


def _limit(body: dict[str, Any], *names: str) -> int | None:
    for name in names:
        value = body.get(name)
        if isinstance(value, int) and value > 0:
            return value
    return None


def _bad_request(message: str, param: str) -> ModelAnswer:
    return ModelAnswer(400, error_body(400, message, param=param, code="invalid_value"))


def _chat(body: dict[str, Any], rng: random.Random, digest: str) -> ModelAnswer:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return _bad_request("'messages' must be a non-empty array.", "messages")
    texts = [_text_of(m.get("content")) if isinstance(m, dict) else str(m) for m in messages]
    prompt_tokens = sum(_tokens(t) + 3 for t in texts) + 3
    limit = _limit(body, "max_completion_tokens", "max_tokens")
    raw_n = body.get("n")
    n = raw_n if isinstance(raw_n, int) and 0 < raw_n <= 16 else 1
    choices, completion_tokens = [], 0
    for index in range(n):
        text, used, reason = _reply(rng, texts[-1], limit)
        completion_tokens += used
        choices.append(
            {
                "index": index,
                "message": {
                    "role": "assistant",
                    "content": text,
                    "refusal": None,
                    "annotations": [],
                },
                "logprobs": None,
                "finish_reason": reason,
            }
        )
    return ModelAnswer(
        200,
        {
            "id": f"chatcmpl-{digest[:24]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body["model"],
            "choices": choices,
            "usage": _usage(prompt_tokens, completion_tokens),
            "service_tier": "default",
            "system_fingerprint": f"fp_emu{digest[24:32]}",
        },
        prompt_tokens,
        completion_tokens,
    )


def _completion(body: dict[str, Any], rng: random.Random, digest: str) -> ModelAnswer:
    prompt = body.get("prompt")
    prompts = prompt if isinstance(prompt, list) else [prompt]
    if not prompts or any(not isinstance(p, str) for p in prompts):
        return _bad_request("'prompt' must be a string or an array of strings.", "prompt")
    limit = _limit(body, "max_tokens") or 16
    choices, prompt_tokens, completion_tokens = [], 0, 0
    for index, text_in in enumerate(prompts):
        prompt_tokens += _tokens(text_in)
        text, used, reason = _reply(rng, text_in, limit)
        completion_tokens += used
        choices.append(
            {"text": " " + text, "index": index, "logprobs": None, "finish_reason": reason}
        )
    return ModelAnswer(
        200,
        {
            "id": f"cmpl-{digest[:24]}",
            "object": "text_completion",
            "created": int(time.time()),
            "model": body["model"],
            "choices": choices,
            "usage": _usage(prompt_tokens, completion_tokens),
            "system_fingerprint": f"fp_emu{digest[24:32]}",
        },
        prompt_tokens,
        completion_tokens,
    )


def _embedding(body: dict[str, Any], digest: str) -> ModelAnswer:
    raw = body.get("input")
    inputs = raw if isinstance(raw, list) and raw and not isinstance(raw[0], int) else [raw]
    if any(x is None or x == "" or x == [] for x in inputs):
        return _bad_request("'input' must be a non-empty string or array.", "input")
    dims = body.get("dimensions")
    dims = dims if isinstance(dims, int) and 0 < dims <= 4096 else DEFAULT_EMBEDDING_DIMENSIONS
    data, prompt_tokens = [], 0
    for index, item in enumerate(inputs):
        text = item if isinstance(item, str) else json.dumps(item)
        prompt_tokens += _tokens(text) if isinstance(item, str) else len(item)
        vec_rng = random.Random(hashlib.sha256(f"{digest}/{index}/{text}".encode()).digest())
        vec = [vec_rng.gauss(0.0, 1.0) for _ in range(dims)]
        norm = math.sqrt(sum(v * v for v in vec)) or 1.0
        data.append(
            {"object": "embedding", "index": index, "embedding": [round(v / norm, 6) for v in vec]}
        )
    return ModelAnswer(
        200,
        {
            "object": "list",
            "data": data,
            "model": body["model"],
            "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
        },
        prompt_tokens,
        0,
    )


def _response(body: dict[str, Any], rng: random.Random, digest: str) -> ModelAnswer:
    raw = body.get("input")
    if isinstance(raw, list):
        prompt = " ".join(
            _text_of(m.get("content")) if isinstance(m, dict) else str(m) for m in raw
        )
    else:
        prompt = _text_of(raw)
    if not prompt:
        return _bad_request("'input' must be a non-empty string or array.", "input")
    input_tokens = _tokens(prompt) + _tokens(_text_of(body.get("instructions")))
    text, output_tokens, reason = _reply(rng, prompt, _limit(body, "max_output_tokens"))
    return ModelAnswer(
        200,
        {
            "id": f"resp_{digest[:32]}",
            "object": "response",
            "created_at": int(time.time()),
            "status": "completed" if reason == "stop" else "incomplete",
            "incomplete_details": None if reason == "stop" else {"reason": "max_output_tokens"},
            "model": body["model"],
            "output": [
                {
                    "id": f"msg_{digest[32:64]}",
                    "type": "message",
                    "status": "completed",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": text, "annotations": []}],
                }
            ],
            "usage": {
                "input_tokens": input_tokens,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": output_tokens,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": input_tokens + output_tokens,
            },
        },
        input_tokens,
        output_tokens,
    )


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def answer(endpoint: str, body: dict[str, Any]) -> ModelAnswer:
    """The model's answer to one request sent to ``endpoint`` (``/v1/...``)."""
    raw = _digest({"endpoint": endpoint, "body": body})
    digest = raw.hex()
    rng = random.Random(raw)
    if endpoint == "/v1/chat/completions":
        return _chat(body, rng, digest)
    if endpoint == "/v1/completions":
        return _completion(body, rng, digest)
    if endpoint == "/v1/embeddings":
        return _embedding(body, digest)
    if endpoint == "/v1/responses":
        return _response(body, rng, digest)
    return ModelAnswer(404, error_body(404, f"The built-in model does not serve {endpoint}."))


def prompt_tokens(endpoint: str, body: dict[str, Any]) -> int:
    """Input tokens the model would count for a request, without answering it."""
    if endpoint == "/v1/chat/completions":
        messages = body.get("messages")
        if not isinstance(messages, list):
            return 0
        texts = [_text_of(m.get("content")) if isinstance(m, dict) else str(m) for m in messages]
        return sum(_tokens(t) + 3 for t in texts) + 3
    if endpoint == "/v1/completions":
        prompt = body.get("prompt")
        prompts = prompt if isinstance(prompt, list) else [prompt]
        return sum(_tokens(p) for p in prompts if isinstance(p, str))
    if endpoint == "/v1/embeddings":
        raw = body.get("input")
        items = raw if isinstance(raw, list) and raw and not isinstance(raw[0], int) else [raw]
        return sum(
            _tokens(i) if isinstance(i, str) else len(i) if isinstance(i, list) else 0
            for i in items
        )
    raw = body.get("input")
    if isinstance(raw, list):
        prompt = " ".join(
            _text_of(m.get("content")) if isinstance(m, dict) else str(m) for m in raw
        )
    else:
        prompt = _text_of(raw)
    return _tokens(prompt) + _tokens(_text_of(body.get("instructions")))
