"""Benchmark: obstore against fsspec (s3fs) moving a 200 MB file through moto's S3 server.

Each library runs in a process of its own, as a worker would: upload a local
file to s3://, download it back to a local file, and (the baseline, measured in
the same run by the same library) copy the object store to store, which moves
the same bytes inside the server without passing through the process. Printed
per library: throughput of each step and its ratio to that copy, and the
process's peak RSS growth over its own idle RSS (after import and one small
request) during each transfer. Both libraries keep the same parts in flight
(2 of 5 MiB, what storage/objects.py uses); the median of --rounds is shown.

    python -m bench.storage_backends [--mb 200] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

MB = 1_000_000
MIB = 1024 * 1024
BUCKET = "bench"
LIBRARIES = ("obstore", "fsspec")
STEPS = ("upload", "download", "copy")


def _rss_mb(field: str) -> float:
    """VmRSS (now) or VmHWM (peak since the last reset) of this process, in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024 / MB
    raise RuntimeError(f"no {field} in /proc/self/status")


def _reset_peak() -> None:
    # Linux: writing 5 to clear_refs resets VmHWM to the current RSS.
    Path("/proc/self/clear_refs").write_text("5")


async def _measure(step: Callable[[], Awaitable[None]], size: int, idle: float) -> dict[str, float]:
    _reset_peak()
    started = time.perf_counter()
    await step()
    seconds = time.perf_counter() - started
    return {"mb_s": size / MB / seconds, "growth_mb": _rss_mb("VmHWM") - idle}


async def _obstore_step(name: str, src: Path, dst: Path, prefix: str, size: int) -> dict[str, Any]:
    import obstore

    from storage import ObjectStorage

    storage = ObjectStorage()
    up, copied = f"s3://{BUCKET}/{prefix}/up.jsonl", f"{prefix}/copy.jsonl"
    async with storage.atomic_write(f"s3://{BUCKET}/{prefix}/warm") as warm:
        warm.write_bytes(b"warm\n")
    idle = _rss_mb("VmRSS")

    async def upload() -> None:
        async with storage.atomic_write(up) as local:
            await asyncio.to_thread(_copy_file, src, local)

    async def download() -> None:
        with dst.open("wb") as out:
            async for chunk in storage.read_chunks(up):
                await asyncio.to_thread(out.write, chunk)

    async def copy() -> None:
        store, key = storage._open(up)
        await obstore.copy_async(store, key, copied)

    step = {"upload": upload, "download": download, "copy": copy}[name]
    return {"idle_mb": idle, **await _measure(step, size, idle)}


async def _fsspec_step(name: str, src: Path, dst: Path, prefix: str, size: int) -> dict[str, Any]:
    import s3fs

    fs = s3fs.S3FileSystem(
        asynchronous=True,
        endpoint_url=os.environ["AWS_ENDPOINT_URL"],
        max_concurrency=2,
    )
    session = await fs.set_session()
    up, copied = f"{BUCKET}/{prefix}/up.jsonl", f"{BUCKET}/{prefix}/copy.jsonl"
    await fs._pipe_file(f"{BUCKET}/{prefix}/warm", b"warm\n")
    idle = _rss_mb("VmRSS")

    async def upload() -> None:
        await fs._put_file(str(src), up, chunksize=5 * MIB)

    async def download() -> None:
        await fs._get_file(up, str(dst))

    async def copy() -> None:
        await fs._copy(up, copied)

    step = {"upload": upload, "download": download, "copy": copy}[name]
    try:
        return {"idle_mb": idle, **await _measure(step, size, idle)}
    finally:
        await session.close()


def _copy_file(src: Path, dst: Path) -> None:
    with src.open("rb") as reading, dst.open("wb") as writing:
        while chunk := reading.read(MIB):
            writing.write(chunk)


def child(library: str, step: str, src: Path, prefix: str) -> None:
    run = _obstore_step if library == "obstore" else _fsspec_step
    with tempfile.TemporaryDirectory(prefix="bench-storage-") as scratch:
        dst = Path(scratch) / "down.jsonl"
        found = asyncio.run(run(step, src, dst, prefix, src.stat().st_size))
        if step == "download":
            found["same"] = _sha256(dst) == _sha256(src)
    print(json.dumps(found))


def _sha256(path: Path) -> str:
    with path.open("rb") as stream:
        return hashlib.file_digest(stream, "sha256").hexdigest()


def make_input(path: Path, size: int) -> None:
    line = b'{"custom_id": "req-%08d", "method": "POST", "url": "/v1/chat/completions"}'
    pad = hashlib.sha256(b"bench").hexdigest().encode() * 8
    written, i = 0, 0
    with path.open("wb") as out:
        while written < size:
            chunk = ((line % i) + pad + b"\n")[: size - written]
            out.write(chunk)
            written += len(chunk)
            i += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--mb", type=int, default=200, help="file size in MB (10^6 bytes)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", choices=LIBRARIES, help=argparse.SUPPRESS)
    parser.add_argument("--step", choices=STEPS, help=argparse.SUPPRESS)
    parser.add_argument("--src", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--prefix", help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.child:
        child(opts.child, opts.step, opts.src, opts.prefix)
        return

    from devstack.storage_servers import ROOT, MotoServer

    runs: dict[str, dict[str, list[dict[str, Any]]]] = {
        lib: {step: [] for step in STEPS} for lib in LIBRARIES
    }
    with tempfile.TemporaryDirectory(prefix="bench-storage-") as tmp:
        src = Path(tmp) / "input.jsonl"
        make_input(src, opts.mb * MB)
        with MotoServer(Path(tmp) / "moto") as moto:
            moto.create_bucket(BUCKET)
            env = {**os.environ, **moto.env()}
            for round_ in range(opts.rounds):
                # Alternate who goes first: neither always gets the colder server.
                order = LIBRARIES if round_ % 2 == 0 else LIBRARIES[::-1]
                for lib in order:
                    for step in STEPS:
                        runs[lib][step].append(
                            _run_child(lib, step, src, f"{lib}-{round_}", env, ROOT)
                        )
    report(runs, opts.mb, opts.rounds)


def _run_child(
    lib: str, step: str, src: Path, prefix: str, env: dict[str, str], root: Path
) -> dict[str, Any]:
    """One step in a fresh process, so its peak RSS is that step's alone."""
    done = subprocess.run(
        [
            *(sys.executable, "-m", "bench.storage_backends", "--child", lib, "--step", step),
            *("--src", str(src), "--prefix", prefix),
        ],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if done.returncode != 0:
        raise SystemExit(f"{lib} {step} failed:\n{done.stderr}")
    found: dict[str, Any] = json.loads(done.stdout)
    return found


def report(runs: dict[str, dict[str, list[dict[str, Any]]]], mb: int, rounds: int) -> None:
    print(f"{mb} MB through moto's S3 server, median of {rounds} rounds, a fresh process a step")
    print("library   idle RSS step         MB/s  / copy  peak over idle")
    for lib, steps in runs.items():
        copy = statistics.median(r["mb_s"] for r in steps["copy"])
        for step, found in steps.items():
            idle = statistics.median(r["idle_mb"] for r in found)
            rate = statistics.median(r["mb_s"] for r in found)
            growth = max(r["growth_mb"] for r in found)
            print(
                f"{lib:8} {idle:7.1f}MB {step:9} {rate:7.1f} {rate / copy:6.2f}x {growth:12.1f} MB"
            )
        if not all(r["same"] for r in steps["download"]):
            print(f"FAIL  {lib}: the downloaded bytes differ from the upload")
    print("peak over idle: the worst round; / copy: against the same library's store-to-store copy")


if __name__ == "__main__":
    main()
