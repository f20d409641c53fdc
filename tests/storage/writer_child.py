"""A worker's atomic write of a large object, in a process of its own so a test can SIGKILL it.

    python -m tests.storage.writer_child LOCATION MEGABYTES

Prints "uploading" once the local file is written and the upload begins.
"""

from __future__ import annotations

import asyncio
import sys

from storage import ObjectStorage

MIB = 1024 * 1024


async def main(location: str, megabytes: int) -> None:
    async with ObjectStorage().atomic_write(location) as local:
        with local.open("wb") as out:
            for i in range(megabytes):
                out.write(bytes([i % 251]) * MIB)
        print("uploading", flush=True)
    print("published", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
