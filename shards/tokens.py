"""A tokenizer-free estimate of a request's input tokens and its output-token ceiling.

Heuristic (no tokenizer download at run time): about four characters of text
per token, which is OpenAI's own rule of thumb for English. Chat requests add
3 tokens per message and 3 per request for the chat format, as OpenAI's
token-counting guide does. Counted: the text of message contents (string or
``text`` parts), a completion's ``prompt``, an embedding's ``input`` (a token
array counts its length), a response's ``input`` and ``instructions``, and tool
definitions (their JSON, at four characters a token). Not counted: images,
audio and files. Expect the estimate within a few tens of percent of the real
count for English prose; code, other languages and numbers run higher.

The output ceiling is what the request allows: ``max_completion_tokens``,
``max_tokens`` or ``max_output_tokens`` (times ``n`` for chat); embeddings
produce no output tokens; a legacy completion without ``max_tokens`` stops at
16. A chat or responses request without a limit has no ceiling.
"""

from __future__ import annotations

import json
import math
from typing import Any, NamedTuple

CHARS_PER_TOKEN = 4
CHAT_TOKENS_PER_MESSAGE = 3
CHAT_TOKENS_PER_REQUEST = 3
LEGACY_COMPLETION_DEFAULT_MAX = 16


class RequestTokens(NamedTuple):
    input_tokens: int
    output_ceiling: int | None
    """None: the request sets no limit on its output."""


def text_tokens(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN) if text else 0


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [
            part if isinstance(part, str) else part.get("text")
            for part in content
            if isinstance(part, str) or isinstance(part, dict)
        ]
        return " ".join(t for t in texts if isinstance(t, str))
    return ""


def _positive(body: dict[str, Any], *names: str) -> int | None:
    for name in names:
        value = body.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def _input_tokens(body: dict[str, Any]) -> int:
    tokens = 0
    messages = body.get("messages")
    if isinstance(messages, list):
        tokens += CHAT_TOKENS_PER_REQUEST
        for message in messages:
            content = message.get("content") if isinstance(message, dict) else message
            tokens += text_tokens(_text_of(content)) + CHAT_TOKENS_PER_MESSAGE
    prompt = body.get("prompt")
    for item in prompt if isinstance(prompt, list) else [prompt]:
        tokens += text_tokens(item) if isinstance(item, str) else 0
    raw = body.get("input")
    if isinstance(raw, str):
        tokens += text_tokens(raw)
    elif isinstance(raw, list) and raw and all(isinstance(x, int) for x in raw):
        tokens += len(raw)
    elif isinstance(raw, list):
        for item in raw:
            if isinstance(item, str):
                tokens += text_tokens(item)
            elif isinstance(item, list):
                tokens += len(item)
            elif isinstance(item, dict):
                tokens += text_tokens(_text_of(item.get("content")))
    instructions = body.get("instructions")
    if isinstance(instructions, str):
        tokens += text_tokens(instructions)
    tools = body.get("tools")
    if tools:
        tokens += text_tokens(json.dumps(tools, separators=(",", ":")))
    return tokens


def _output_ceiling(body: dict[str, Any]) -> int | None:
    if "messages" in body:
        limit = _positive(body, "max_completion_tokens", "max_tokens")
        choices = _positive(body, "n") or 1
        return None if limit is None else limit * choices
    if "prompt" in body:
        limit = _positive(body, "max_tokens") or LEGACY_COMPLETION_DEFAULT_MAX
        return limit * (_positive(body, "n") or 1)
    if "input" in body and not _is_responses(body):
        return 0
    return _positive(body, "max_output_tokens")


def _is_responses(body: dict[str, Any]) -> bool:
    """An embeddings body has only input (and model, dimensions, encoding_format, user)."""
    return any(k in body for k in ("instructions", "max_output_tokens", "tools", "reasoning"))


def _plain_chat(body: dict[str, Any], messages: list[Any]) -> RequestTokens | None:
    """The common case, counted without the general walk: string contents, no tools."""
    tokens = CHAT_TOKENS_PER_REQUEST + CHAT_TOKENS_PER_MESSAGE * len(messages)
    for message in messages:
        content = message.get("content") if type(message) is dict else None
        if type(content) is not str:
            return None
        tokens += -(-len(content) // CHARS_PER_TOKEN)
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    choices = body.get("n", 1)
    if type(limit) is not int or limit <= 0 or type(choices) is not int or choices < 1:
        return None
    return RequestTokens(tokens, limit * choices)


def request_tokens(body: dict[str, Any], url: str | None = None) -> RequestTokens:
    """Estimated input tokens and output ceiling of one request body.

    ``url`` (the line's) tells embeddings from responses when the body alone cannot.
    """
    messages = body.get("messages")
    chat_url = url is None or url.endswith("/chat/completions")
    if chat_url and type(messages) is list and "tools" not in body and "prompt" not in body:
        plain = _plain_chat(body, messages)
        if plain is not None:
            return plain
    ceiling = _output_ceiling(body)
    if url is not None and url.endswith("/embeddings"):
        ceiling = 0
    elif url is not None and url.endswith("/responses"):
        ceiling = _positive(body, "max_output_tokens")
    return RequestTokens(_input_tokens(body), ceiling)
