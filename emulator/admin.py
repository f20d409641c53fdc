"""Admin routes under ``/_emulator``: health, knobs, forcing a batch, counters, successes.

They are never subject to auth, error_rate or drop_rate (see ``faults.py``), so
scripts can wait for start-up and tests can change behaviour mid-flight.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ValidationError

from emulator import dialect
from emulator.errors import ApiError
from emulator.knobs import ForceOutcome, merge
from emulator.runtime import RuntimeDep


class ForceRequest(BaseModel):
    outcome: ForceOutcome


# Knobs that hold keys: the admin routes need no auth, so they say whether one is set, never it.
SECRET_KNOBS = ("auth_key", "upstream_api_key")


def _shown(knobs: dict[str, Any]) -> dict[str, Any]:
    return {k: ("[set]" if v and k in SECRET_KNOBS else v) for k, v in knobs.items()}


def admin_router() -> APIRouter:
    router = APIRouter()

    @router.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/knobs")
    async def get_knobs(rt: RuntimeDep) -> dict[str, Any]:
        return _shown(rt.knobs.model_dump())

    @router.patch("/knobs")
    async def patch_knobs(patch: dict[str, Any], rt: RuntimeDep) -> dict[str, Any]:
        old = rt.knobs
        try:
            new = merge(old, patch)
        except ValidationError as exc:
            first = exc.errors()[0]
            param = ".".join(str(p) for p in first["loc"]) or None
            raise ApiError(
                400, f"Invalid knob '{param}': {first['msg']}", param=param, code="invalid_value"
            ) from exc
        rt.knobs = new
        await rt.scheduler.knobs_changed(old, new)
        return _shown(new.model_dump())

    @router.post("/batches/{batch_id}/force")
    async def force_batch(batch_id: str, body: ForceRequest, rt: RuntimeDep) -> dict[str, Any]:
        record = await rt.scheduler.force(batch_id, body.outcome)
        return dialect.batch_object(record, rt.knobs.dialect)

    @router.get("/successes")
    async def successes(rt: RuntimeDep, prefix: str = "", limit: int = 10_000) -> dict[str, Any]:
        """Per custom_id, how many batches ran it to success: a request billed twice shows."""
        return await rt.store.successes(prefix, max(0, min(limit, 100_000)))

    @router.get("/stats")
    async def stats(rt: RuntimeDep) -> dict[str, Any]:
        faults = rt.faults
        return {
            "batches_by_status": await rt.store.count_by_status(),
            "active_batches": len(rt.scheduler.active),
            "lines_executed": rt.scheduler.lines_executed,
            "api_requests": faults.api_requests if faults else 0,
            "dropped_connections": faults.dropped if faults else 0,
            "injected_errors": faults.injected if faults else 0,
            "ambiguous_creates": faults.ambiguous_creates if faults else 0,
            "refused_reads": faults.refused_reads if faults else 0,
            "api_calls": dict(sorted(faults.calls.items())) if faults else {},
            "webhooks": rt.webhooks.stats(),
        }

    return router
