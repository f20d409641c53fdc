"""One line per activity call, shown beside it in the Web UI's timeline and event history."""

from __future__ import annotations

from pathlib import PurePosixPath

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from contracts.steps import (
        AttachBatchRequest,
        AwaitChangeRequest,
        AwaitFileRequest,
        CancelBatchRequest,
        CleanUpRequest,
        CollectResultsRequest,
        CreateBatchRequest,
        SubmitBatchRequest,
        UploadInputRequest,
        ValidateAndUploadRequest,
        ValidateInputRequest,
        WatchBatchRequest,
    )


def size(n: int) -> str:
    """Bytes as a person reads them: 812 B, 12 KB, 3.4 MB."""
    value, unit = float(n), "B"
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            break
        value /= 1024
    if unit == "B":
        return f"{n} B"
    return f"{value:.0f} {unit}" if value >= 10 else f"{value:.1f} {unit}"


def summary(request: object) -> str | None:
    """What this call does, in the words of the issue's examples (`upload in.jsonl (12 KB)`)."""
    if isinstance(request, SubmitBatchRequest):
        name = PurePosixPath(request.validation.input_path).name
        return f"validate and upload {name}, create batch"
    if isinstance(request, ValidateAndUploadRequest):
        # The size is known only once validated: the heartbeat then shows it.
        return f"validate and upload {PurePosixPath(request.validation.input_path).name}"
    if isinstance(request, ValidateInputRequest):
        return f"validate {PurePosixPath(request.input_path).name}"
    if isinstance(request, UploadInputRequest):
        return f"upload {PurePosixPath(request.input_path).name} ({size(request.bytes)})"
    if isinstance(request, AwaitFileRequest):
        return f"wait until {request.file_id} is processed"
    if isinstance(request, CreateBatchRequest):
        return "create batch"
    if isinstance(request, AttachBatchRequest):
        return f"attach to {request.batch_id}"
    if isinstance(request, WatchBatchRequest):
        batch = request.batch
        counts = batch.counts
        done = f", {batch.finished}/{counts.total} finished" if counts and counts.total else ""
        return f"wait: {batch.status.value}{done}"
    if isinstance(request, AwaitChangeRequest):
        return f"wait: {request.known_status.value}"
    if isinstance(request, CollectResultsRequest):
        counts = request.batch.counts
        if counts is not None and counts.total:
            collect = f"collect {counts.total} results"
        else:
            collect = f"collect results of {request.batch.id}"
        files = len(request.gateway_file_ids or ())
        if not files:
            return collect
        return f"{collect}, then delete {files} gateway file{'' if files == 1 else 's'}"
    if isinstance(request, CancelBatchRequest):
        if request.batch_id is None:
            return "cancel any batch the create made"
        return f"cancel {request.batch_id}"
    if isinstance(request, CleanUpRequest):
        files = len(request.gateway_file_ids)
        if not files:
            return "clean up: remove the input index"
        return f"clean up: delete {files} gateway file{'' if files == 1 else 's'}"
    return None
