"""How stored records look on the wire, per dialect.

``openai`` renders objects exactly as the OpenAI SDK types them. ``azure``
reproduces what Azure OpenAI (and Kong in front of it) sends, so clients can be
tested against it: capitalised statuses (``"Validating"``, ``"In_progress"``,
``"Completed"``: the first letter only, so a case-insensitive comparison still
works), ``""`` instead of null file ids, ``request_counts: null`` until the
lines are known, and the endpoint without its ``/v1`` prefix.
"""

from __future__ import annotations

from typing import Any

from emulator.knobs import EmulatorDialect
from emulator.models import BatchRecord, FileRecord


def file_object(record: FileRecord, emu_now: float) -> dict[str, Any]:
    """Azure's file states, lowercase as its JSON has them (OpenAI's are a subset)."""
    status = record.status(emu_now)
    return {
        "id": record.id,
        "object": "file",
        "bytes": record.bytes,
        "created_at": record.created_at,
        "filename": record.filename,
        "purpose": record.purpose,
        "status": status,
        "status_details": record.processing_error if status == "error" else None,
        "expires_at": None,
    }


def batch_object(record: BatchRecord, dialect: EmulatorDialect) -> dict[str, Any]:
    counts: dict[str, int] | None = record.request_counts.model_dump()
    usage: dict[str, Any] | None = None
    if record.status not in ("validating", "failed"):
        inp, out = record.usage.input_tokens, record.usage.output_tokens
        usage = {
            "input_tokens": inp,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": out,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": inp + out,
        }
    errors = None if record.errors is None else {"object": "list", "data": record.errors}
    obj: dict[str, Any] = {
        "id": record.id,
        "object": "batch",
        "endpoint": record.endpoint,
        "model": record.model,
        "errors": errors,
        "input_file_id": record.input_file_id,
        "completion_window": record.completion_window,
        "status": record.status,
        "output_file_id": record.output_file_id,
        "error_file_id": record.error_file_id,
        "created_at": record.created_at,
        "in_progress_at": record.in_progress_at,
        "expires_at": record.expires_at,
        "finalizing_at": record.finalizing_at,
        "completed_at": record.completed_at,
        "failed_at": record.failed_at,
        "expired_at": record.expired_at,
        "cancelling_at": record.cancelling_at,
        "cancelled_at": record.cancelled_at,
        "request_counts": counts,
        "usage": usage,
        "metadata": record.metadata,
    }
    if dialect == "azure":
        obj["status"] = record.status[0].upper() + record.status[1:]
        obj["output_file_id"] = record.output_file_id or ""
        obj["error_file_id"] = record.error_file_id or ""
        obj["endpoint"] = record.endpoint.removeprefix("/v1")
        if record.request_counts.total == 0:
            obj["request_counts"] = None
        obj.pop("usage")
    return obj


def list_object(data: list[dict[str, Any]], has_more: bool) -> dict[str, Any]:
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": has_more,
    }
