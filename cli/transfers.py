"""Copies between this machine and BATCH_STORE: the input up, the results back.

Credentials come from the starter's own environment (AWS_*, AZURE_STORAGE_*,
GOOGLE_*), as on the workers; only the locations enter the workflow input.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
from contextlib import suppress
from pathlib import Path

from cli.environment import storage
from cli.exits import UsageError
from cli.locations import JobFiles, Transfer
from contracts.job import results_owner_location
from storage import LocationError, StorageUnavailable, Stores


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


async def bring_back(files: JobFiles, *, owner: bool = True) -> list[Transfer]:
    """Each result file the job wrote into the store, written whole (or not at all) locally.

    Two runs of the same command follow one job and may bring the same file back at
    once: each writes a temporary file of its own (never taken for a dead writer's
    leftover, as LocalStorage's part files are) and renames it into place. Only the
    run that started the job (owner) removes the store's copies afterwards; so for
    another run, a copy gone from the store (before or during its read) was brought
    back by the owner to the same local path, and counts as brought.
    """
    stores = _stores()
    brought: list[Transfer] = []
    for transfer in files.bring_back:
        if await stores.size(transfer.remote) is None:
            if not owner and await asyncio.to_thread(transfer.local.is_file):
                brought.append(transfer)
            continue  # the job ended before writing it
        staged = await asyncio.to_thread(_staged_beside, transfer.local)
        try:
            with staged.open("wb") as out:
                async for chunk in stores.read_chunks(transfer.remote):
                    await asyncio.to_thread(out.write, chunk)
            await asyncio.to_thread(_publish, staged, transfer.local)
        except (LocationError, StorageUnavailable):
            if owner or await stores.size(transfer.remote) is not None:
                raise
        finally:
            await asyncio.to_thread(staged.unlink, missing_ok=True)
        brought.append(transfer)
    return brought


def _staged_beside(target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".incoming", dir=target.parent)
    os.close(fd)
    return Path(name)


def _publish(staged: Path, target: Path) -> None:
    """fsync, then rename into place: the file is whole or absent, even after a crash."""
    with staged.open("rb") as written:
        os.fsync(written.fileno())
    staged.chmod(0o644)  # mkstemp's 0600: results are as readable as any file the user makes
    os.replace(staged, target)


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
