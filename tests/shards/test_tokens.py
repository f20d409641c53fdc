"""The documented token heuristic, request by request."""

from __future__ import annotations

from typing import Any

import pytest

from shards.tokens import RequestTokens, request_tokens

CHAT = "/v1/chat/completions"


@pytest.mark.parametrize(
    ("body", "url", "expected"),
    [
        ({"messages": [{"role": "user", "content": "x" * 8}], "max_tokens": 5}, CHAT, (2 + 6, 5)),
        (
            {"messages": [{"role": "user", "content": "abcde"}], "max_tokens": 0, "n": 3},
            CHAT,
            (2 + 6, None),
        ),
        (
            {
                "messages": [
                    {"role": "system", "content": "abcd"},
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": "abcdefgh"},
                            {"type": "image_url", "image_url": {"url": "data:..."}},
                        ],
                    },
                ],
                "max_completion_tokens": 10,
                "n": 2,
            },
            CHAT,
            (1 + 2 + 9, 20),
        ),
        ({"prompt": ["abcd", "abcdefgh"]}, "/v1/completions", (3, 16)),
        ({"input": "a" * 40}, "/v1/embeddings", (10, 0)),
        ({"input": [[1, 2, 3], [4, 5]]}, "/v1/embeddings", (5, 0)),
        (
            {"input": "a" * 12, "instructions": "b" * 4, "max_output_tokens": 50},
            "/v1/responses",
            (4, 50),
        ),
        ({"input": [{"role": "user", "content": "abcd"}]}, "/v1/responses", (1, None)),
    ],
)
def test_request_tokens(body: dict[str, Any], url: str, expected: tuple[int, int | None]) -> None:
    assert request_tokens({"model": "m", **body}, url) == RequestTokens(*expected)


def test_tool_definitions_count_as_input() -> None:
    plain = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
    tools = [{"type": "function", "function": {"name": "f" * 40, "parameters": {}}}]

    assert (
        request_tokens({**plain, "tools": tools}).input_tokens
        > request_tokens(plain).input_tokens + 10
    )
