"""Peak memory of streaming a large object up or down, measured in a process of its own.

    python -m tests.storage.memory_child write|read LOCATION MEGABYTES

Prints one JSON object: the bytes moved, their sha256, and the process's peak
RSS growth (MB) over its own baseline once the store is warmed up.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import resource
import sys

from storage import ObjectStorage

MIB = 1024 * 1024


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def main(mode: str, location: str, megabytes: int) -> None:
    store = ObjectStorage()
    # Warm up: the store's client, its connection pool, the thread pool.
    async with store.atomic_write(location + ".warm") as local:
        local.write_bytes(b"warm\n")
    await store.delete(location + ".warm")
    baseline = peak_mb()

    digest = hashlib.sha256()
    size = 0
    if mode == "write":
        async with store.atomic_write(location) as local:
            with local.open("wb") as out:
                for i in range(megabytes):
                    chunk = bytes([i % 251]) * MIB
                    digest.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
    else:
        async for chunk in store.read_chunks(location):
            digest.update(chunk)
            size += len(chunk)
    growth = peak_mb() - baseline
    print(json.dumps({"bytes": size, "sha256": digest.hexdigest(), "growth_mb": growth}))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))
