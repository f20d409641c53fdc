"""Benchmark: upload and download of a 200 MB file through the emulator.

Baseline, measured in the same run on the same disk: a plain copy of the same
bytes (``shutil.copyfile``). Prints throughput of each, the ratio of emulator
to copy, and the peak resident-memory growth of the emulator process, which
stays small when uploads stream to disk and downloads stream out.

    python -m bench.emulator_files [--mb 200]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import tempfile
import time
from pathlib import Path

import httpx

from bench.emulator_common import MB, PeakRss
from devstack.emulator import EmulatorProcess


def make_file(path: Path, size: int) -> None:
    line = (
        b'{"custom_id": "req-%08d", "method": "POST", "url": "/v1/chat/completions", '
        b'"body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "'
    )
    pad = hashlib.sha256(b"bench").hexdigest().encode() * 8
    written, i = 0, 0
    with path.open("wb") as fh:
        while written < size:
            chunk = (line % i) + pad + b'"}]}}\n'
            chunk = chunk[: size - written]
            fh.write(chunk)
            written += len(chunk)
            i += 1


def timed_copy(src: Path, dst: Path) -> float:
    t0 = time.perf_counter()
    shutil.copyfile(src, dst)
    with dst.open("rb") as fh:
        os.fsync(fh.fileno())
    return time.perf_counter() - t0


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--mb", type=int, default=200, help="file size in MB (10^6 bytes)")
    opts = args.parse_args()
    size = opts.mb * MB

    with tempfile.TemporaryDirectory(prefix="emu-bench-files-") as tmp:
        root = Path(tmp)
        src = root / "input.jsonl"
        make_file(src, size)
        copy_s = timed_copy(src, root / "copy.jsonl")
        (root / "copy.jsonl").unlink()

        with EmulatorProcess(root / "emulator") as emu:
            assert emu.pid is not None
            with httpx.Client(base_url=emu.base_url, timeout=600) as http:
                with PeakRss(emu.pid) as up_mem, src.open("rb") as fh:
                    t0 = time.perf_counter()
                    resp = http.post(
                        "/files", files={"file": ("input.jsonl", fh)}, data={"purpose": "batch"}
                    )
                    up_s = time.perf_counter() - t0
                resp.raise_for_status()
                file_id = resp.json()["id"]
                assert resp.json()["bytes"] == size

                out = root / "download.jsonl"
                with PeakRss(emu.pid) as down_mem, out.open("wb") as fh:
                    t0 = time.perf_counter()
                    with http.stream("GET", f"/files/{file_id}/content") as stream:
                        stream.raise_for_status()
                        for chunk in stream.iter_raw(1024 * 1024):
                            fh.write(chunk)
                    down_s = time.perf_counter() - t0
                assert out.stat().st_size == size

    copy_rate = size / MB / copy_s
    up_rate = size / MB / up_s
    down_rate = size / MB / down_s
    print(f"file size                 {size / MB:8.0f} MB")
    print(f"baseline: plain copy      {copy_rate:8.1f} MB/s  ({copy_s:.2f} s)")
    print(
        f"emulator upload           {up_rate:8.1f} MB/s  ({up_s:.2f} s)"
        f"  ratio to copy {up_rate / copy_rate:5.2f}"
    )
    print(
        f"emulator download         {down_rate:8.1f} MB/s  ({down_s:.2f} s)"
        f"  ratio to copy {down_rate / copy_rate:5.2f}"
    )
    print(
        f"emulator RSS growth       upload {up_mem.growth / MB:6.1f} MB,"
        f" download {down_mem.growth / MB:6.1f} MB"
        f"  (RSS before upload {up_mem.start_rss / MB:.1f} MB;"
        f" file/RSS-growth ratio {size / max(up_mem.growth, down_mem.growth, 1):.0f}x)"
    )


if __name__ == "__main__":
    main()
