"""Pydantic models of the file and batch objects, normalised across dialects.

Azure and Kong bend the OpenAI shapes (capitalised statuses, "" for absent file
ids, null request_counts, endpoints without /v1); these models accept every
variant in batch-api-facts.md and expose one shape to the rest of the code.
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from contracts.batch_status import BatchStatus as BatchStatus
from contracts.ids import id_problem
from contracts.text import printable

# The pydantic error type of an id that is not an id: an answer that will not
# change on a retry, told apart from a half-sent body in GatewayClient._call.
ID_ERROR_TYPE = "gateway_id"
# Of a failed batch's errors, how many are kept, and how long each may be.
MAX_BATCH_ERRORS = 20
MAX_BATCH_ERROR_CHARS = 300

# Every spelling of a status seen or plausible from Azure and gateways
# ("Completed", "InProgress", "in-progress", "In Progress", "canceled") maps
# through its lowercase letters-only form to the OpenAI value.
_STATUS_BY_LETTERS = {status.value.replace("_", ""): status.value for status in BatchStatus} | {
    "canceled": BatchStatus.CANCELLED.value,
    "canceling": BatchStatus.CANCELLING.value,
}


def _normalise_status(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    letters = "".join(ch for ch in value.lower() if ch.isalpha())
    return _STATUS_BY_LETTERS.get(letters, value.strip().lower())


def _blank_to_none(value: Any) -> Any:
    if isinstance(value, str) and not value.strip():
        return None
    return value


def _gateway_id(value: str | None) -> str | None:
    """An id the gateway sent, refused unless it has an id's shape (contracts.ids)."""
    problem = id_problem(value) if value is not None else None
    if problem is not None:
        raise PydanticCustomError(ID_ERROR_TYPE, "the id " + problem)
    return value


class _GatewayObject(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class FileStatus(StrEnum):
    """A file's processing state: OpenAI's (uploaded, processed, error) and Azure's."""

    UPLOADED = "uploaded"
    PENDING = "pending"
    PROCESSED = "processed"
    ERROR = "error"
    DELETED = "deleted"


# Azure's FileState has "running" (processing under way) and "deleting" too.
_FILE_STATUS_BY_LETTERS = {status.value: status.value for status in FileStatus} | {
    "running": FileStatus.PENDING.value,
    "processing": FileStatus.PENDING.value,
    "deleting": FileStatus.DELETED.value,
}


def _normalise_file_status(value: Any) -> Any:
    """A known spelling in any case; an unknown or absent status is None (not known)."""
    if not isinstance(value, str):
        return value
    letters = "".join(ch for ch in value.lower() if ch.isalpha())
    return _FILE_STATUS_BY_LETTERS.get(letters)


class FileObject(_GatewayObject):
    id: str
    bytes: int | None = None
    created_at: int | None = None
    filename: str | None = None
    purpose: str | None = None
    # Deprecated by OpenAI, still sent by it and by Azure; None when a gateway omits it.
    status: FileStatus | None = None
    status_details: str | None = None

    @field_validator("id", mode="after")
    @classmethod
    def _id_shape(cls, value: str) -> str:
        _gateway_id(value)
        return value

    @field_validator("status", mode="before")
    @classmethod
    def _known_status(cls, value: Any) -> Any:
        return _normalise_file_status(value)

    @field_validator("status_details", mode="before")
    @classmethod
    def _details_as_text(cls, value: Any) -> Any:
        if isinstance(value, dict | list):
            return json.dumps(value)
        return _blank_to_none(value)


class RequestCounts(_GatewayObject):
    total: int = 0
    completed: int = 0
    failed: int = 0

    @field_validator("total", "completed", "failed", mode="before")
    @classmethod
    def _null_is_zero(cls, value: Any) -> Any:
        return 0 if value is None else value

    @property
    def finished(self) -> int:
        return self.completed + self.failed


class BatchError(_GatewayObject):
    code: str | None = None
    message: str | None = None
    param: str | None = None
    line: int | None = None

    def describe(self) -> str:
        """One line for history and logs, however long or odd the gateway's words."""
        where = f"line {self.line}: " if self.line is not None else ""
        code = f"[{self.code}] " if self.code else ""
        return printable(f"{where}{code}{self.message or 'no message'}", MAX_BATCH_ERROR_CHARS)


class BatchErrors(_GatewayObject):
    data: list[BatchError] = Field(default_factory=list)

    @field_validator("data", mode="before")
    @classmethod
    def _null_is_empty(cls, value: Any) -> Any:
        # A failed validation lists a few lines' problems; the first ones tell what to fix.
        return (
            [] if value is None else value[:MAX_BATCH_ERRORS] if isinstance(value, list) else value
        )


class TokenUsage(_GatewayObject):
    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0


class Batch(_GatewayObject):
    id: str
    status: BatchStatus
    endpoint: str | None = None
    input_file_id: str | None = None
    output_file_id: str | None = None
    error_file_id: str | None = None
    completion_window: str | None = None
    created_at: int | None = None
    in_progress_at: int | None = None
    finalizing_at: int | None = None
    completed_at: int | None = None
    failed_at: int | None = None
    expired_at: int | None = None
    expires_at: int | None = None
    cancelling_at: int | None = None
    cancelled_at: int | None = None
    # None where the gateway sent null (Azure): unknown, not zero.
    request_counts: RequestCounts | None = None
    errors: BatchErrors = Field(default_factory=BatchErrors)
    metadata: dict[str, str] = Field(default_factory=dict)
    usage: TokenUsage | None = None

    @field_validator("status", mode="before")
    @classmethod
    def _lowercase_status(cls, value: Any) -> Any:
        return _normalise_status(value)

    @field_validator("output_file_id", "error_file_id", "input_file_id", "endpoint", mode="before")
    @classmethod
    def _blank_ids(cls, value: Any) -> Any:
        return _blank_to_none(value)

    @field_validator("id", "output_file_id", "error_file_id", "input_file_id", mode="after")
    @classmethod
    def _id_shape(cls, value: str | None) -> str | None:
        return _gateway_id(value)

    @field_validator("endpoint", mode="after")
    @classmethod
    def _versioned_endpoint(cls, value: str | None) -> str | None:
        if value is None:
            return None
        path = value.strip().lstrip("/")
        return "/" + path if path.startswith("v1/") else "/v1/" + path

    @field_validator("errors", "metadata", mode="before")
    @classmethod
    def _null_is_empty(cls, value: Any) -> Any:
        return {} if value is None else value


T = TypeVar("T")
# A list page holds at most 100 (the client asks for 100): a page of a million
# items is not a page.
MAX_PAGE_ITEMS = 1000


class Page(BaseModel, Generic[T]):
    """One page of a list route."""

    model_config = ConfigDict(extra="ignore")

    data: list[T] = Field(default_factory=list, max_length=MAX_PAGE_ITEMS)
    has_more: bool = False
    last_id: str | None = None

    @field_validator("last_id", mode="after")
    @classmethod
    def _id_shape(cls, value: str | None) -> str | None:
        return _gateway_id(value)
