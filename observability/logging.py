"""The worker's log lines: human text (default) or one JSON object a line (LOG_FORMAT=json).

Every line from an activity or a workflow carries its ids: the SDK's loggers
(``activity.logger``, ``workflow.logger``) put them in the record as the
``temporal_activity`` / ``temporal_workflow`` extras, and this module lifts
them into fields. ``batch_id`` comes from the activity's input when it names
a batch (set by LogContextInterceptor), from an explicit ``extra``, or from
a batch id in the message; ``custom_id`` from an explicit ``extra`` or a
``custom_id='...'`` in the message (integrity problems name the request so).

Every line is masked with gateway.redaction's one rule, whatever logged it:
the secrets the worker holds (``GatewaySettings.secret_values()``: the gateway
key, every GATEWAY_EXTRA_HEADERS value, TEMPORAL_API_KEY, BATCH_CODEC_KEY,
BATCH_CODEC_OLD_KEYS) become ``[redacted]``.
"""

from __future__ import annotations

import contextvars
import copy
import json
import logging
import re
import sys
from collections.abc import Collection, Mapping
from datetime import UTC, datetime
from typing import Any

from temporalio import activity, workflow
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
)

from contracts.text import escape_controls, printable
from gateway.redaction import redact

ENV_LOG_FORMAT = "LOG_FORMAT"
ENV_LOG_LEVEL = "LOG_LEVEL"
LOG_FORMATS = ("text", "json")
# A log line's own text; a longer one (a gateway's page) is cut with a marker.
MAX_LOG_MESSAGE_CHARS = 4000
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_batch_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("batch_id", default=None)

# batch_ plus an id with at least one digit: OpenAI, Azure and emulator ids, not "batch_expired".
_BATCH_ID_IN_TEXT = re.compile(r"\bbatch_(?=[A-Za-z_-]*\d)[A-Za-z0-9_-]{6,}")
_CUSTOM_ID_IN_TEXT = re.compile(r"custom_id=(['\"])(.+?)\1")

# Fields lifted from the SDK's extras, in output order.
_ACTIVITY_FIELDS = (
    ("workflow_id", "workflow_id"),
    ("run_id", "workflow_run_id"),
    ("workflow_type", "workflow_type"),
    ("activity_type", "activity_type"),
    ("activity_id", "activity_id"),
    ("attempt", "attempt"),
    ("task_queue", "task_queue"),
    ("namespace", "namespace"),
)
_WORKFLOW_FIELDS = (
    ("workflow_id", "workflow_id"),
    ("run_id", "run_id"),
    ("workflow_type", "workflow_type"),
    ("attempt", "attempt"),
    ("task_queue", "task_queue"),
    ("namespace", "namespace"),
)


def log_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The context of a record: workflow and activity ids, batch_id, custom_id."""
    fields: dict[str, Any] = {}
    details = record.__dict__
    act = details.get("temporal_activity")
    if isinstance(act, Mapping):
        for field, key in _ACTIVITY_FIELDS:
            if act.get(key) is not None:
                fields[field] = act[key]
    wf = details.get("temporal_workflow")
    if isinstance(wf, Mapping):
        for field, key in _WORKFLOW_FIELDS:
            if wf.get(key) is not None:
                fields.setdefault(field, wf[key])
    message = record.getMessage()
    batch_id = details.get("batch_id") or _batch_id.get()
    if batch_id is None:
        match = _BATCH_ID_IN_TEXT.search(message)
        batch_id = match.group(0) if match else None
    if batch_id is not None:
        fields["batch_id"] = batch_id
    custom_id = details.get("custom_id")
    if custom_id is None:
        found = _CUSTOM_ID_IN_TEXT.search(message)
        custom_id = found.group(2) if found else None
    if custom_id is not None:
        fields["custom_id"] = custom_id
    return fields


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, then the context fields."""

    def __init__(self, secrets: Collection[str] = ()) -> None:
        super().__init__()
        self._secrets = frozenset(secrets)

    def _redact(self, text: str) -> str:
        return redact(text, self._secrets)

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": self._redact(record.getMessage()),
        }
        for key, value in log_fields(record).items():
            line[key] = self._redact(value) if isinstance(value, str) else value
        if record.exc_info:
            line["exception"] = self._redact(self.formatException(record.exc_info))
        elif record.exc_text:
            line["exception"] = self._redact(record.exc_text)
        return json.dumps(line, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """The human format, with batch_id and custom_id appended when the message lacks them."""

    def __init__(self, secrets: Collection[str] = ()) -> None:
        super().__init__(TEXT_FORMAT)
        self._secrets = frozenset(secrets)

    def formatMessage(self, record: logging.LogRecord) -> str:
        """The line's own text with control characters escaped: one record, one line.

        An id or a gateway's words with a newline in them cannot forge a second
        line (an ERROR that never happened); a traceback, added after, keeps its lines.
        """
        safe = copy.copy(record)
        safe.message = printable(record.message, MAX_LOG_MESSAGE_CHARS)
        return super().formatMessage(safe)

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = log_fields(record)
        message = record.getMessage()
        tags = [
            f"{key}={escape_controls(str(fields[key]))}"
            for key in ("batch_id", "custom_id")
            if key in fields and str(fields[key]) not in message
        ]
        if tags:
            text += " [" + " ".join(tags) + "]"
        return redact(text, self._secrets)


def configure_logging(environ: Mapping[str, str], secrets: Collection[str]) -> str:
    """Set up the root logger from LOG_FORMAT and LOG_LEVEL; returns the format in use.

    secrets are what no line may show: the worker passes GatewaySettings.secret_values().
    """
    fmt = (environ.get(ENV_LOG_FORMAT) or "text").strip().lower()
    if fmt not in LOG_FORMATS:
        raise ValueError(f"{ENV_LOG_FORMAT}={fmt!r}: expected one of {', '.join(LOG_FORMATS)}")
    level = (environ.get(ENV_LOG_LEVEL) or "INFO").strip().upper()
    if not isinstance(logging.getLevelName(level), int):
        raise ValueError(f"{ENV_LOG_LEVEL}={level!r}: expected DEBUG, INFO, WARNING or ERROR")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(secrets) if fmt == "json" else TextFormatter(secrets))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    if fmt == "json":
        # The ids are fields of their own; do not repeat them inside the message.
        activity.logger.activity_info_on_message = False
        workflow.logger.workflow_info_on_message = False
    return fmt


def batch_id_of(arg: Any) -> str | None:
    """The batch an activity's input names, if any (AwaitChangeRequest, CollectResultsRequest)."""
    direct = getattr(arg, "batch_id", None)
    if isinstance(direct, str):
        return direct
    nested = getattr(getattr(arg, "batch", None), "id", None)
    return nested if isinstance(nested, str) else None


class _ActivityLogContext(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        batch_id = next((b for b in map(batch_id_of, input.args) if b), None)
        token = _batch_id.set(batch_id)
        try:
            return await self.next.execute_activity(input)
        finally:
            _batch_id.reset(token)


class LogContextInterceptor(Interceptor):
    """Tags every log line of an activity with the batch its input names."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        return _ActivityLogContext(next)
