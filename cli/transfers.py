"""Copies between this machine and BATCH_STORE: the input up, the results back.

Credentials come from the starter's own environment (AWS_*, AZURE_STORAGE_*,
GOOGLE_*), as on the workers; only the locations enter the workflow input.
"""

from __future__ import annotations

import asyncio
import shutil
from contextlib import suppress

from cli.environment import storage
from cli.exits import UsageError
from cli.locations import JobFiles, Transfer
from contracts.job import results_owner_location
from storage import LocalStorage, LocationError, StorageUnavailable, Stores


def _stores() -> Stores:
    return Stores(storage())


async def upload_input(files: JobFiles) -> None:
    """Put the local input at its per-job key; a cut-short upload leaves nothing there."""
    if files.upload is None:
        return
    local, remote = files.upload.local, files.upload.remote
    try:
        async with _stores().atomic_write(remote) as staged:
            await asyncio.to_thread(shutil.copyfile, local, staged)
    except LocationError as exc:
        raise UsageError(f"cannot copy {local} to the store: {exc}") from None


async def bring_back(files: JobFiles) -> list[Transfer]:
    """Each result file the job wrote into the store, written whole (or not at all) locally."""
    stores = _stores()
    brought: list[Transfer] = []
    for transfer in files.bring_back:
        if await stores.size(transfer.remote) is None:
            continue  # the job ended before writing it
        target = transfer.local
        async with LocalStorage(target.parent).atomic_write(target.name) as staged:
            with staged.open("wb") as out:
                async for chunk in stores.read_chunks(transfer.remote):
                    await asyncio.to_thread(out.write, chunk)
        brought.append(transfer)
    return brought


async def remove_job_copies(files: JobFiles) -> None:
    """Delete what the starter put in the store for this job (never a location the user named)."""
    stores = _stores()
    copies = [t.remote for t in files.bring_back]
    copies += [results_owner_location(t.remote) for t in files.bring_back]
    if files.upload is not None:
        copies.append(files.upload.remote)
    for remote in copies:
        with suppress(LocationError, StorageUnavailable):
            await stores.delete(remote)
