"""Validation of a batch input file, the work of the ``validating`` phase.

Reads the file once, line by line (a 200 MB file never sits in memory), and
returns either the line index the scheduler runs from or the errors a failed
batch reports. Codes follow the ones OpenAI documents (``invalid_json_line``,
``duplicate_custom_id``, ``url_mismatch``, ``model_mismatch``, ``empty_file``,
``too_many_tasks``) plus ``missing_custom_id``, ``invalid_method``,
``invalid_body`` and ``missing_model`` for the cases it leaves unnamed. Line
numbers are 1-based physical lines of the file; blank lines are skipped.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from emulator.store import LineRef

MAX_REPORTED_ERRORS = 1000


@dataclass
class ValidationResult:
    lines: list[LineRef] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    model: str | None = None

    @property
    def ok(self) -> bool:
        return not self.errors


def normalise_endpoint(path: str) -> str:
    """``/chat/completions`` (Azure) and ``/v1/chat/completions`` name the same endpoint."""
    path = "/" + path.strip().lstrip("/")
    return path if path.startswith("/v1/") else "/v1" + path


def _error(line: int | None, code: str, message: str, param: str | None = None) -> dict[str, Any]:
    return {"code": code, "message": message, "param": param, "line": line}


def _check_line(
    raw: bytes,
    line_no: int,
    endpoint: str,
    lenient_url: bool,
    seen: set[str],
    model: str | None,
) -> tuple[dict[str, Any] | None, str | None, str | None]:
    """Return (error, custom_id, model) for one non-blank line."""
    try:
        obj = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        obj = None
    if not isinstance(obj, dict):
        return (
            _error(line_no, "invalid_json_line", "This line is not parseable as valid JSON."),
            None,
            None,
        )
    custom_id = obj.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        return (
            _error(
                line_no,
                "missing_custom_id",
                "Missing required parameter: 'custom_id'.",
                "custom_id",
            ),
            None,
            None,
        )
    if custom_id in seen:
        return (
            _error(
                line_no,
                "duplicate_custom_id",
                f"The custom_id '{custom_id}' is used more than once in this file.",
                "custom_id",
            ),
            None,
            None,
        )
    method = obj.get("method")
    if not isinstance(method, str) or method.upper() != "POST":
        return (
            _error(line_no, "invalid_method", f"Method must be 'POST', got {method!r}.", "method"),
            custom_id,
            None,
        )
    url = obj.get("url")
    url_ok = isinstance(url, str) and (
        url == endpoint or (lenient_url and normalise_endpoint(url) == endpoint)
    )
    if not url_ok:
        return (
            _error(
                line_no,
                "url_mismatch",
                f"The url {url!r} does not match the batch endpoint '{endpoint}'.",
                "url",
            ),
            custom_id,
            None,
        )
    body = obj.get("body")
    if not isinstance(body, dict):
        return (
            _error(line_no, "invalid_body", "The 'body' of a request must be an object.", "body"),
            custom_id,
            None,
        )
    line_model = body.get("model")
    if not isinstance(line_model, str) or not line_model:
        return (
            _error(
                line_no, "missing_model", "Missing required parameter: 'body.model'.", "body.model"
            ),
            custom_id,
            None,
        )
    if model is not None and line_model != model:
        return (
            _error(
                line_no,
                "model_mismatch",
                f"The model '{line_model}' differs from '{model}' used earlier in the file; "
                "a batch uses one model.",
                "body.model",
            ),
            custom_id,
            None,
        )
    return None, custom_id, line_model


def validate_file(
    path: Path, endpoint: str, *, max_requests: int, lenient_url: bool
) -> ValidationResult:
    """Blocking: run it in a worker thread."""
    result = ValidationResult()
    seen: set[str] = set()
    offset = 0
    line_no = 0
    requests = 0
    with path.open("rb") as fh:
        for raw in fh:
            line_no += 1
            start, offset = offset, offset + len(raw)
            if not raw.strip():
                continue
            requests += 1
            if requests > max_requests:
                result.errors.append(
                    _error(
                        line_no,
                        "too_many_tasks",
                        f"The file holds more than the {max_requests} requests a batch may hold.",
                    )
                )
                break
            error, custom_id, line_model = _check_line(
                raw, line_no, endpoint, lenient_url, seen, result.model
            )
            if custom_id is not None:
                seen.add(custom_id)
            if error is not None:
                if len(result.errors) < MAX_REPORTED_ERRORS:
                    result.errors.append(error)
                continue
            assert custom_id is not None
            if result.model is None:
                result.model = line_model
            result.lines.append(LineRef(len(result.lines), start, len(raw), custom_id))
    if requests == 0:
        result.errors.append(_error(None, "empty_file", "The input file holds no requests."))
    if result.errors:
        result.lines = []
    return result
