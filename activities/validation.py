"""Checks a JSONL input before anything leaves the machine.

Every problem names the file, the line and (where known) the custom_id, so the
user fixes them all in one pass instead of one per failed batch.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from contracts.ids import quoted
from contracts.job import InputLimits
from contracts.text import printable
from shards.check import model_of, request_field_problems
from shards.tokens import request_tokens

MAX_REPORTED_PROBLEMS = 20
MAX_PROBLEM_CHARS = 400
_BOM = b"\xef\xbb\xbf"


@dataclass
class InputProblems(Exception):
    """The input file is not a valid batch; nothing was sent anywhere."""

    path: str
    problems: list[str] = field(default_factory=list)
    more: int = 0

    def __str__(self) -> str:
        shown = "\n".join(f"  {p}" for p in self.problems)
        extra = f"\n  ... and {self.more} more" if self.more else ""
        count = len(self.problems) + self.more
        return f"{self.path}: {count} problem(s), nothing was uploaded:\n{shown}{extra}"


@dataclass
class InputChanged(Exception):
    """The input's bytes are not the ones validated: they may not be sent, nor joined on."""

    label: str
    since: str
    validated_sha256: str
    found_sha256: str
    advice: str

    def __str__(self) -> str:
        return (
            f"{self.label} changed since {self.since} (sha256 {self.found_sha256[:16]}..., "
            f"validated {self.validated_sha256[:16]}...); {self.advice}"
        )


def ensure_unchanged(
    label: str, *, validated_sha256: str, found_sha256: str, since: str, advice: str
) -> None:
    """The one check of a later step's bytes against the checksum validation carried."""
    if found_sha256 != validated_sha256:
        raise InputChanged(label, since, validated_sha256, found_sha256, advice)


@dataclass(frozen=True)
class ValidInput:
    requests: int
    bytes: int
    model: str
    sha256: str
    custom_ids: tuple[str, ...] = field(default=(), repr=False)
    input_tokens: int = 0
    largest_request_tokens: int = 0
    largest_request_id: str | None = None


class _Collector:
    def __init__(self, label: str) -> None:
        self.label = label
        self.problems: list[str] = []
        self.more = 0

    def add(self, line: int | None, message: str, custom_id: str | None = None) -> None:
        if len(self.problems) >= MAX_REPORTED_PROBLEMS:
            self.more += 1
            return
        where = f"{self.label}:{line}" if line is not None else self.label
        who = f" custom_id={quoted(custom_id)}" if custom_id is not None else ""
        # Everything from the file is quoted short and escaped: this reaches history.
        self.problems.append(printable(f"{where}:{who} {message}", MAX_PROBLEM_CHARS))

    def raise_if_any(self) -> None:
        if self.problems:
            raise InputProblems(self.label, self.problems, self.more)


def validate_jsonl(path: Path, *, label: str, endpoint: str, limits: InputLimits) -> ValidInput:
    """Stream the file once; raise InputProblems listing what is wrong, line by line."""
    found = _Collector(label)
    if not path.is_file():
        found.add(None, "no such file")
        found.raise_if_any()
    size = path.stat().st_size
    if size == 0:
        found.add(None, "the file is empty; write one JSON request a line")
        found.raise_if_any()
    if size > limits.max_bytes:
        found.add(None, f"{size} bytes is over the limit of {limits.max_bytes} bytes per file")
        found.raise_if_any()

    digest = hashlib.sha256()
    seen_ids: dict[str, int] = {}
    models: dict[str, int] = {}
    requests = 0
    # The enqueued-token quota counts input tokens: the estimate a refusal is compared with.
    input_tokens = 0
    largest: tuple[int, Any] = (0, None)
    with path.open("rb") as stream:
        for number, raw in enumerate(stream, start=1):
            digest.update(raw)
            if number == 1 and raw.startswith(_BOM):
                found.add(1, "starts with a UTF-8 byte order mark (BOM); save the file without it")
                raw = raw[len(_BOM) :]
            if not raw.strip():
                found.add(number, "blank line; every line must be one request: remove it")
                continue
            requests += 1
            if requests > limits.max_requests:
                found.add(number, f"over the limit of {limits.max_requests} requests per file")
                break
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                found.add(
                    number,
                    f"not UTF-8 (byte {exc.start}: {raw[exc.start : exc.start + 1]!r}); "
                    "save the file as UTF-8",
                )
                continue
            try:
                request: Any = json.loads(text)
            except json.JSONDecodeError as exc:
                found.add(
                    number,
                    f"not JSON: {exc.msg} at column {exc.colno}; "
                    "each line must be one complete JSON object",
                )
                continue
            except RecursionError:
                found.add(number, "not a request: JSON nested too deeply")
                continue
            if not isinstance(request, dict):
                found.add(number, f"a request must be a JSON object, got {type(request).__name__}")
                continue
            _check_request(request, number, endpoint, found, seen_ids, models)
            body = request.get("body")
            if isinstance(body, dict):
                tokens = request_tokens(body, endpoint).input_tokens
                input_tokens += tokens
                if tokens > largest[0]:
                    largest = (tokens, request.get("custom_id"))

    if requests == 0 and not found.problems:
        found.add(None, "the file holds no requests; write one JSON request a line")
    if len(models) > 1:
        listed = ", ".join(f"{m!r} (first on line {n})" for m, n in models.items())
        found.add(
            None,
            f"field 'body.model': one model per file, found {len(models)}: {listed}; "
            "split the file by model",
        )
    found.raise_if_any()
    # No blank line passed, so the n-th id is on the n-th line.
    return ValidInput(
        requests=requests,
        bytes=size,
        model=next(iter(models)),
        sha256=digest.hexdigest(),
        custom_ids=tuple(seen_ids),
        input_tokens=input_tokens,
        largest_request_tokens=largest[0],
        largest_request_id=largest[1] if isinstance(largest[1], str) else None,
    )


def _check_request(
    request: dict[str, Any],
    number: int,
    endpoint: str,
    found: _Collector,
    seen_ids: dict[str, int],
    models: dict[str, int],
) -> None:
    custom_id = request.get("custom_id")
    shown_id = custom_id if isinstance(custom_id, str) else None
    if not isinstance(custom_id, str) or not custom_id:
        found.add(
            number, "field 'custom_id': missing or not a non-empty string; give each request one"
        )
    elif custom_id in seen_ids:
        found.add(
            number,
            f"field 'custom_id': duplicate of line {seen_ids[custom_id]}; each must be unique",
            custom_id,
        )
    else:
        seen_ids[custom_id] = number
    for message in request_field_problems(request, endpoint):
        found.add(number, message, shown_id)
    model = model_of(request)
    if model is not None:
        models.setdefault(model, number)
