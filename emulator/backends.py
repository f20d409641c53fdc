"""What runs one line of a batch: the built-in model, or a real model server.

The built-in model is *paced*: it answers instantly and the scheduler spaces the
lines out by ``line_latency_seconds`` in emulated time, so thousands of batches
cost no sleeping tasks. The upstream backend forwards each line to an
OpenAI-compatible server (vLLM, Ollama, llama.cpp, LiteLLM) and its own latency
is the pace, bounded by ``upstream_concurrency`` requests in flight.

Injected line failures (``line_failure_rate``) are decided before either
backend runs, by ``injected_failure``, from a hash of the seed and the line's
``custom_id``: tests can compute which lines will fail.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from emulator import fake_model
from emulator.errors import error_body
from emulator.knobs import Knobs


@dataclass(frozen=True)
class LineOutcome:
    """A line's HTTP answer (``status``/``body``), or ``error`` when there was none."""

    status: int | None
    body: dict[str, Any] | None
    error: dict[str, Any] | None = None
    input_tokens: int = 0
    output_tokens: int = 0

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


class Backend(Protocol):
    paced: bool

    async def run(self, endpoint: str, body: dict[str, Any]) -> LineOutcome: ...

    async def aclose(self) -> None: ...


def injected_failure(custom_id: str, seed: int, rate: float) -> int | None:
    """429 or 500 for the lines ``line_failure_rate`` picks, else None."""
    if rate <= 0:
        return None
    digest = hashlib.sha256(f"{seed}:{custom_id}".encode()).digest()
    draw = int.from_bytes(digest[:8], "big") / 2**64
    if draw >= rate:
        return None
    return 429 if digest[8] % 2 == 0 else 500


def failure_outcome(status: int) -> LineOutcome:
    if status == 429:
        body = error_body(
            429,
            "Rate limit reached for requests (injected by the emulator).",
            code="rate_limit_exceeded",
        )
    else:
        body = error_body(status, "The server had an error processing your request (injected).")
    return LineOutcome(status, body)


class BuiltinBackend:
    paced = True

    async def run(self, endpoint: str, body: dict[str, Any]) -> LineOutcome:
        answer = fake_model.answer(endpoint, body)
        return LineOutcome(
            answer.status,
            answer.body,
            input_tokens=answer.input_tokens,
            output_tokens=answer.output_tokens,
        )

    async def aclose(self) -> None:
        return None


def _usage_tokens(body: dict[str, Any] | None) -> tuple[int, int]:
    usage = body.get("usage") if isinstance(body, dict) else None
    if not isinstance(usage, dict):
        return 0, 0
    inp = usage.get("prompt_tokens", usage.get("input_tokens", 0))
    out = usage.get("completion_tokens", usage.get("output_tokens", 0))
    return (inp if isinstance(inp, int) else 0), (out if isinstance(out, int) else 0)


class UpstreamBackend:
    """Forward ``/v1/chat/completions`` to ``<upstream_url>/chat/completions``."""

    paced = False

    def __init__(self, knobs: Knobs) -> None:
        assert knobs.upstream_url
        self.base_url = knobs.upstream_url.rstrip("/")
        self.model = knobs.upstream_model
        headers = (
            {"Authorization": f"Bearer {knobs.upstream_api_key}"} if knobs.upstream_api_key else {}
        )
        self._client = httpx.AsyncClient(
            headers=headers,
            timeout=knobs.upstream_timeout_seconds,
            limits=httpx.Limits(max_connections=knobs.upstream_concurrency),
        )
        self._slots = asyncio.Semaphore(knobs.upstream_concurrency)

    async def run(self, endpoint: str, body: dict[str, Any]) -> LineOutcome:
        path = endpoint.removeprefix("/v1")
        if self.model:
            body = {**body, "model": self.model}
        async with self._slots:
            try:
                resp = await self._client.post(self.base_url + path, json=body)
            except httpx.HTTPError as exc:
                return LineOutcome(
                    None,
                    None,
                    {"code": "upstream_unavailable", "message": f"{type(exc).__name__}: {exc}"},
                )
        try:
            payload = resp.json()
        except json.JSONDecodeError:
            payload = None
        if not isinstance(payload, dict):
            payload = error_body(resp.status_code, resp.text[:1000] or "empty upstream answer")
        inp, out = _usage_tokens(payload)
        return LineOutcome(resp.status_code, payload, input_tokens=inp, output_tokens=out)

    async def aclose(self) -> None:
        await self._client.aclose()


def make_backend(knobs: Knobs) -> Backend:
    if knobs.upstream_url:
        return UpstreamBackend(knobs)
    return BuiltinBackend()
