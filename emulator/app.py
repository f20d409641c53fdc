"""The HTTP surface: files and batches routes, mounted where each gateway has them.

The same routes answer at the root (Kong AI Gateway: ``/files``, ``/batches``),
under ``/v1`` (OpenAI) and under ``/openai`` and ``/openai/v1`` (Azure OpenAI,
which adds an ``api-version`` query parameter that is accepted and ignored).
An upload answers 201 as Kong and Azure do, except under ``/v1`` where it
answers 200 as OpenAI does. Admin routes live in ``admin.py``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, ConfigDict
from starlette.types import ASGIApp

from emulator import dialect
from emulator.admin import admin_router
from emulator.clock import wall_now
from emulator.errors import ApiError, install_handlers, not_found
from emulator.faults import FaultsMiddleware
from emulator.knobs import Knobs
from emulator.models import (
    COMPLETION_WINDOWS,
    SUPPORTED_ENDPOINTS,
    BatchRecord,
    FileRecord,
    new_batch_id,
)
from emulator.runtime import Runtime, RuntimeDep
from emulator.uploads import receive_upload
from emulator.validation import normalise_endpoint

API_PREFIXES = ("", "/v1", "/openai", "/openai/v1")
FILE_PURPOSES = {
    "assistants",
    "batch",
    "batch_output",
    "fine-tune",
    "vision",
    "user_data",
    "evals",
}
DOWNLOAD_CHUNK = 1024 * 1024
SWITCH_INTERVAL = 0.0005


class _ChunkedFileResponse(FileResponse):
    chunk_size = DOWNLOAD_CHUNK


class CreateBatch(BaseModel):
    model_config = ConfigDict(extra="ignore")

    input_file_id: str
    endpoint: str
    completion_window: str
    metadata: dict[str, str] | None = None


def _upload_status(request: Request) -> int:
    return 200 if request.url.path.startswith("/v1/") else 201


async def _file_or_404(rt: Runtime, file_id: str) -> FileRecord:
    record = await rt.store.get_file(file_id)
    if record is None:
        raise not_found("File", file_id, "file_id")
    return record


def _check_metadata(metadata: dict[str, str] | None) -> None:
    if metadata is None:
        return
    if len(metadata) > 16:
        raise ApiError(400, "Invalid 'metadata': at most 16 pairs.", param="metadata")
    for key, value in metadata.items():
        if len(key) > 64 or len(value) > 512:
            raise ApiError(
                400,
                "Invalid 'metadata': keys are at most 64 characters, values at most 512.",
                param="metadata",
            )


def _check_endpoint(endpoint: str, knobs: Knobs) -> str:
    """The endpoint as stored (always with /v1); Azure's form without /v1 is accepted there."""
    candidate = normalise_endpoint(endpoint) if knobs.dialect == "azure" else endpoint
    if candidate not in SUPPORTED_ENDPOINTS:
        raise ApiError(
            400,
            f"Invalid value for 'endpoint': {endpoint!r}. "
            f"Supported: {', '.join(SUPPORTED_ENDPOINTS)}.",
            param="endpoint",
            code="invalid_value",
        )
    return candidate


def _check_processed(source: FileRecord, emu_now: float) -> None:
    """Azure's refusal of a batch on a file it has not processed (message as Azure words it)."""
    status = source.status(emu_now)
    if status != "processed":
        raise ApiError(
            400,
            f"The input file '{source.id}' is in '{status}' state. Only files with status "
            "'Processed' are accepted for batch inferencing. Please check the file status "
            "and try again",
            param="input_file_id",
        )


def api_router() -> APIRouter:
    router = APIRouter()

    @router.post("/files")
    async def create_file(request: Request, rt: RuntimeDep) -> JSONResponse:
        upload = await receive_upload(request, rt.store, rt.knobs.max_file_bytes)
        if upload.purpose not in FILE_PURPOSES:
            rt.store.part_path(upload.file_id).unlink(missing_ok=True)
            raise ApiError(
                400,
                f"Invalid value for 'purpose': {upload.purpose!r}.",
                param="purpose",
                code="invalid_value",
            )
        knobs = rt.knobs
        emu_now = rt.scheduler.clock.now()
        record = FileRecord(
            id=upload.file_id,
            filename=upload.filename,
            purpose=upload.purpose,
            bytes=upload.bytes,
            created_at=wall_now(),
            emu_processed_at=emu_now + knobs.file_processing_seconds
            if knobs.file_processing_seconds > 0
            else None,
            processing_error=knobs.file_processing_error,
        )
        await rt.store.add_file(record)
        return JSONResponse(
            dialect.file_object(record, emu_now), status_code=_upload_status(request)
        )

    @router.get("/files")
    async def list_files(
        rt: RuntimeDep,
        purpose: str | None = None,
        after: str | None = None,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 10_000,
        order: Literal["asc", "desc"] = "desc",
    ) -> dict[str, Any]:
        records, has_more = await rt.store.list_files(purpose, after, limit, order)
        emu_now = rt.scheduler.clock.now()
        return dialect.list_object([dialect.file_object(r, emu_now) for r in records], has_more)

    @router.get("/files/{file_id}")
    async def get_file(file_id: str, rt: RuntimeDep) -> dict[str, Any]:
        record = await _file_or_404(rt, file_id)
        return dialect.file_object(record, rt.scheduler.clock.now())

    @router.get("/files/{file_id}/content")
    async def get_file_content(file_id: str, rt: RuntimeDep) -> FileResponse:
        record = await _file_or_404(rt, file_id)
        path = rt.store.blob_path(record.id)
        if not path.exists():
            raise not_found("File", file_id, "file_id")
        return _ChunkedFileResponse(path, media_type="application/octet-stream")

    @router.delete("/files/{file_id}")
    async def delete_file(file_id: str, rt: RuntimeDep) -> dict[str, Any]:
        if not await rt.store.delete_file(file_id):
            raise not_found("File", file_id, "file_id")
        return {"id": file_id, "object": "file", "deleted": True}

    @router.post("/batches")
    async def create_batch(body: CreateBatch, rt: RuntimeDep) -> dict[str, Any]:
        knobs = rt.knobs
        window = COMPLETION_WINDOWS.get(body.completion_window)
        if window is None:
            raise ApiError(
                400,
                f"Invalid value for 'completion_window': {body.completion_window!r}; only '24h'.",
                param="completion_window",
                code="invalid_value",
            )
        endpoint = _check_endpoint(body.endpoint, knobs)
        _check_metadata(body.metadata)
        source = await rt.store.get_file(body.input_file_id)
        if source is None:
            raise not_found("File", body.input_file_id, "input_file_id")
        if source.purpose != "batch":
            raise ApiError(
                400,
                f"File {source.id} has purpose '{source.purpose}'; a batch input needs 'batch'.",
                param="input_file_id",
                code="invalid_value",
            )
        _check_processed(source, rt.scheduler.clock.now())
        created, expires, emu_now, emu_expires = rt.scheduler.new_record_times(window)
        record = BatchRecord(
            id=new_batch_id(),
            endpoint=endpoint,
            input_file_id=source.id,
            completion_window=body.completion_window,
            metadata=body.metadata,
            created_at=created,
            expires_at=expires,
            forced=knobs.force_outcome,
            emu_phase_started=emu_now,
            emu_expires=emu_expires,
        )
        if knobs.drop_metadata:
            record.metadata = None
        if rt.claim_late_create():
            rt.commit_late(record, knobs)
            raise ApiError(
                504,
                "The upstream did not answer in time (late create injected by the emulator).",
                code="gateway_timeout",
            )
        record = await rt.commit(record, knobs)
        return dialect.batch_object(record, knobs.dialect)

    @router.get("/batches")
    async def list_batches(
        rt: RuntimeDep,
        after: str | None = None,
        limit: Annotated[int, Query(ge=1, le=100)] = 20,
    ) -> dict[str, Any]:
        records, has_more = await rt.store.list_batches(after, limit)
        d = rt.knobs.dialect
        return dialect.list_object([dialect.batch_object(r, d) for r in records], has_more)

    @router.get("/batches/{batch_id}")
    async def get_batch(batch_id: str, rt: RuntimeDep) -> dict[str, Any]:
        record = await rt.store.get_batch(batch_id)
        if record is None:
            raise not_found("Batch", batch_id, "batch_id")
        return dialect.batch_object(record, rt.knobs.dialect)

    @router.post("/batches/{batch_id}/cancel")
    async def cancel_batch(batch_id: str, rt: RuntimeDep) -> dict[str, Any]:
        record = await rt.scheduler.cancel(batch_id)
        return dialect.batch_object(record, rt.knobs.dialect)

    return router


def create_app(data_dir: Path, knobs: Knobs) -> ASGIApp:
    """The ASGI app uvicorn serves: FastAPI behind the faults middleware."""
    rt = Runtime(data_dir, knobs)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        os.makedirs(data_dir, exist_ok=True)
        # SQLite and file I/O run in threads that hand results back to the loop;
        # the default 5 ms GIL switch interval would add that much to each hop
        # whenever the loop is busy.
        sys.setswitchinterval(SWITCH_INTERVAL)
        await rt.store.open()
        await rt.scheduler.start()
        try:
            yield
        finally:
            await rt.scheduler.stop()
            await rt.webhooks.stop()
            await rt.store.close()

    app = FastAPI(
        title="Batch API emulator",
        lifespan=lifespan,
        docs_url="/_emulator/docs",
        openapi_url="/_emulator/openapi.json",
        redoc_url=None,
    )
    app.state.runtime = rt
    install_handlers(app)
    router = api_router()
    for prefix in API_PREFIXES:
        app.include_router(router, prefix=prefix)
    app.include_router(admin_router(), prefix="/_emulator")
    faults = FaultsMiddleware(
        app, lambda: rt.knobs, rt.claim_ambiguous_create, rt.claim_refused_read
    )
    rt.faults = faults
    return faults
