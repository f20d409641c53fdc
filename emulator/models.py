"""The records the emulator stores: one per file, one per batch.

They carry what the API shows plus the bookkeeping the scheduler needs (emulated
deadlines, the forced outcome); ``dialect.py`` turns them into API objects.
"""

from __future__ import annotations

import uuid
from typing import Any, Literal

from pydantic import BaseModel, Field

from emulator.knobs import ForceOutcome

BatchStatus = Literal[
    "validating",
    "failed",
    "in_progress",
    "finalizing",
    "completed",
    "expired",
    "cancelling",
    "cancelled",
]
TERMINAL: frozenset[str] = frozenset({"failed", "completed", "expired", "cancelled"})
CANCELLABLE: frozenset[str] = frozenset({"validating", "in_progress", "finalizing"})

SUPPORTED_ENDPOINTS = (
    "/v1/chat/completions",
    "/v1/completions",
    "/v1/embeddings",
    "/v1/responses",
)
COMPLETION_WINDOWS = {"24h": 86_400.0}


def new_file_id() -> str:
    return f"file-{uuid.uuid4().hex}"


def new_batch_id() -> str:
    return f"batch_{uuid.uuid4().hex}"


def result_file_id(batch_id: str, kind: Literal["output", "error"]) -> str:
    """Derived from the batch, so finalizing twice (after a crash) rewrites one file."""
    digest = uuid.uuid5(uuid.NAMESPACE_URL, f"{batch_id}/{kind}").hex
    return f"file-{digest}"


FileStatus = Literal["pending", "processed", "error"]


class FileRecord(BaseModel):
    id: str
    filename: str
    purpose: str
    bytes: int
    created_at: int
    # Emulated time processing ends, and its failure reason; None: processed at upload.
    emu_processed_at: float | None = None
    processing_error: str | None = None

    def status(self, emu_now: float) -> FileStatus:
        if self.emu_processed_at is not None and emu_now < self.emu_processed_at:
            return "pending"
        return "error" if self.processing_error is not None else "processed"


class RequestCounts(BaseModel):
    total: int = 0
    completed: int = 0
    failed: int = 0


class TokenUsage(BaseModel):
    input_tokens: int = 0
    output_tokens: int = 0


class BatchRecord(BaseModel):
    id: str
    endpoint: str
    input_file_id: str
    completion_window: str
    metadata: dict[str, str] | None = None
    status: BatchStatus = "validating"
    created_at: int
    expires_at: int
    in_progress_at: int | None = None
    finalizing_at: int | None = None
    completed_at: int | None = None
    failed_at: int | None = None
    expired_at: int | None = None
    cancelling_at: int | None = None
    cancelled_at: int | None = None
    output_file_id: str | None = None
    error_file_id: str | None = None
    errors: list[dict[str, Any]] | None = None
    request_counts: RequestCounts = Field(default_factory=RequestCounts)
    usage: TokenUsage = Field(default_factory=TokenUsage)
    model: str | None = None
    # Scheduler bookkeeping, in emulated seconds; never shown to clients.
    forced: ForceOutcome = "none"
    emu_phase_started: float
    emu_expires: float

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL
