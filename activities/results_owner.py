"""Results are written create-only: a job writes where no results are, or where its own are.

Whoever starts a job chooses where its results go; without this, a job could
write over any file the worker may write (another team's results, an input).
At the job's start (validation) each of its results locations must not exist,
unless the job asks to replace them (`replace_results`) or they were written by
an earlier run of the same job (the same workflow id: a rerun, a schedule's
run with {workflow_id} in its paths). Which job wrote them is kept in a small
hidden file beside the results, written when they are published.
"""

from __future__ import annotations

import asyncio

from contracts.job import results_owner_location as owner_location
from storage import LocationError, Storage


async def refuse_others_results(storage: Storage, paths: tuple[str, ...], job: str | None) -> None:
    """LocationError for the first of paths that exists and is not this job's own."""
    for path in paths:
        if not await storage.exists(path):
            continue
        if job is not None and await _owner(storage, path) == job:
            continue
        raise LocationError(
            f"{path}: results are already there, not written by this job; a job writes its "
            "results only where none are, unless it asks to replace them "
            "(replace_results: true, starter.py --replace)"
        )


async def mark_as_written_by(storage: Storage, paths: tuple[str, ...], job: str | None) -> None:
    """Name the job beside each results location it has just published."""
    if job is None:
        return  # not run by a workflow: no job to name
    for path in paths:
        async with storage.atomic_write(owner_location(path)) as local:
            await asyncio.to_thread(local.write_text, job)


async def _owner(storage: Storage, path: str) -> str | None:
    marker = owner_location(path)
    if not await storage.exists(marker):
        return None
    async with storage.reading(marker) as local:
        text = await asyncio.to_thread(local.read_text, errors="replace")
    return text.strip()[:1000]
