"""Where a sharded job's shard files are: the shared data directory, or an object store.

On the data directory the shard functions of ``shards/`` work on the files
in place (kernel copies, renames). In an object store, where workers share no
disk, each activity stages what it needs in a worker-local temporary folder:
the split writes its shards there and publishes each one (a single put or a
multipart upload, atomic like a job's results); select_resubmissions and the
merge download the files they read there first (a merge of one round, no
shard inputs). Memory stays bounded (chunks and upload parts); the price is
worker-local disk for the files staged and one more copy of their bytes over
the network.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlparse

from contracts.sharding import RoundState, shard_errors, shard_input, shard_results
from shards.split import PLAN_NAME, SplitPlan, read_plan
from storage import LocationError, Stores
from storage.objects import SCHEMES


def in_object_store(location: str) -> bool:
    return urlparse(location).scheme in SCHEMES


def ran(index: int, state: RoundState) -> bool:
    """Whether the shard's child ended with its results and errors files written."""
    return not (
        index in state.failed_shards()
        or index >= state.next_shard
        or index in state.unrun
        or index in state.retry
    )


class ShardFolder:
    """Local paths for the shard files of one job, wherever the files are kept."""

    def __init__(self, stores: Stores, scratch: Path | None) -> None:
        self.stores = stores
        self.scratch = scratch
        """The worker-local staging folder; None when the files are on the data directory."""

    @property
    def staged(self) -> bool:
        return self.scratch is not None

    def path(self, location: str) -> Path:
        """Where the file at location is read or written on this worker."""
        if self.scratch is not None:
            scheme, bucket, key = self.stores.objects.split(location)
            return self.scratch / scheme / bucket / key
        try:
            return self.stores.local.path(location)
        except LocationError as exc:
            raise LocationError(
                f"{location}: a sharded job keeps its shard files beside its results, on the "
                f"data directory or in an object store ({exc})"
            ) from None

    async def fetch(self, location: str) -> Path:
        """The file staged from the store (once); on the data directory, the file itself."""
        path = self.path(location)
        if self.scratch is None or path.exists():
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
        part = path.with_name(path.name + ".part")
        with part.open("wb") as out:
            async for chunk in self.stores.objects.read_chunks(location):
                await asyncio.to_thread(out.write, chunk)
        part.replace(path)
        return path

    async def plan(self, folder: str) -> SplitPlan:
        await self.fetch(f"{folder}/{PLAN_NAME}")
        return read_plan(self.path(folder))

    async def fetch_round(
        self, folder: str, state: RoundState, *, results: bool, inputs: bool = True
    ) -> SplitPlan:
        """The round's plan and, of the shards that ran, errors (and results).

        Inputs: of every shard, or (``inputs`` False) only of those that did not
        run, whose requests become error lines.
        """
        plan = await self.plan(folder)
        if self.scratch is None:
            return plan
        for index in range(state.shards):
            if inputs or not ran(index, state):
                await self.fetch(shard_input(folder, index))
            if ran(index, state):
                await self.fetch(shard_errors(folder, index))
                if results:
                    await self.fetch(shard_results(folder, index))
        return plan

    async def publish(self, local: Path, location: str) -> None:
        """A finished staged file put in the store, then removed from the worker's disk."""
        if self.scratch is None:
            return
        await self.stores.objects.put_file(location, local)
        await asyncio.to_thread(local.unlink)

    async def remove_stale_results(self, folder: str) -> None:
        """Results an earlier run under the same workflow id left in the round's folder."""
        if self.scratch is None:
            local = self.path(folder)
            if local.is_dir():
                for stale in (
                    *local.glob("shard-*.results.jsonl"),
                    *local.glob("shard-*.errors.jsonl"),
                ):
                    stale.unlink()
            return
        for location in await self.stores.objects.locations_under(folder):
            name = location.rsplit("/", 1)[-1]
            if name.startswith("shard-") and name.endswith((".results.jsonl", ".errors.jsonl")):
                await self.stores.objects.delete(location)


@asynccontextmanager
async def shard_folder(stores: Stores, location: str) -> AsyncIterator[ShardFolder]:
    """The shard files under location, staged in a temporary folder when in an object store."""
    if not in_object_store(location):
        yield ShardFolder(stores, None)
        return
    scratch = Path(tempfile.mkdtemp(prefix="batch-shards-"))
    try:
        yield ShardFolder(stores, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


# Every name the job writes under its shard folder: each round's shards, their
# results and errors, the plan, the resubmission input and a child's leftover
# input index and results marks (activities/results_owner.py). Removal deletes
# these and nothing else.
_SHARD_FILE = re.compile(
    r"round-\d+/(?:shard-\d{5,}(?:\.results|\.errors)?\.jsonl|shards\.json|resubmit\.jsonl"
    r"|\.shard-\d{5,}\.results\.jsonl\.[0-9a-f]{16}\.input-index"
    r"|\.shard-\d{5,}\.(?:results|errors)\.jsonl\.written-by)"
)


def is_shard_file(name: str) -> bool:
    """Whether name (relative to a shard folder) is one the sharded job itself writes."""
    return _SHARD_FILE.fullmatch(name) is not None
