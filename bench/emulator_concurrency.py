"""Benchmark: a thousand concurrent batches on one emulator.

Baseline, measured in the same run: the latency of ``GET /batches/{id}`` and
``GET /batches`` on the idle emulator. Then N batches of M lines are created at
once and, while they run, the same requests are timed again; the script prints
both, their ratio, how long the batches took against the ideal (the emulated
phase durations and line pacing, converted to real time), and the emulator's
peak memory.

    python -m bench.emulator_concurrency [--batches 1000] [--lines 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

import httpx

from bench.emulator_common import MB, PeakRss, percentile, summary_ms
from devstack.emulator import EmulatorProcess

# One emulated second is 10 real ms; a line 0.1 real s, 2 lines of a batch at once.
KNOBS = {"time_scale": 100, "line_latency_seconds": 10, "batch_concurrency": 2}


def jsonl(lines: int) -> bytes:
    rows = [
        {
            "custom_id": f"r{i}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"q {i}"}]},
        }
        for i in range(lines)
    ]
    return "".join(json.dumps(row) + "\n" for row in rows).encode()


async def probe(http: httpx.AsyncClient, batch_id: str, samples: list[float]) -> None:
    t0 = time.perf_counter()
    one = await http.get(f"/batches/{batch_id}")
    listed = await http.get("/batches", params={"limit": 20})
    samples.append(time.perf_counter() - t0)
    one.raise_for_status()
    listed.raise_for_status()


async def run(batches: int, lines: int) -> None:
    with tempfile.TemporaryDirectory(prefix="emu-bench-conc-") as tmp:
        emu = EmulatorProcess(Path(tmp), knobs=KNOBS).start()
        try:
            assert emu.pid is not None
            limits = httpx.Limits(max_connections=32)
            async with httpx.AsyncClient(base_url=emu.base_url, timeout=120, limits=limits) as http:
                up = await http.post(
                    "/files", files={"file": ("b.jsonl", jsonl(lines))}, data={"purpose": "batch"}
                )
                up.raise_for_status()
                body = {
                    "input_file_id": up.json()["id"],
                    "endpoint": "/v1/chat/completions",
                    "completion_window": "24h",
                }
                first = (await http.post("/batches", json=body)).json()["id"]
                for _ in range(200):
                    if (await http.get(f"/batches/{first}")).json()["status"] == "completed":
                        break
                    await asyncio.sleep(0.05)

                idle: list[float] = []
                for _ in range(200):
                    await probe(http, first, idle)

                loaded: list[float] = []
                with PeakRss(emu.pid) as mem:
                    t0 = time.perf_counter()
                    sem = asyncio.Semaphore(32)

                    async def create() -> str:
                        async with sem:
                            resp = await http.post("/batches", json=body)
                            resp.raise_for_status()
                            return str(resp.json()["id"])

                    ids = await asyncio.gather(*(create() for _ in range(batches)))
                    created_s = time.perf_counter() - t0
                    remaining = set(ids)
                    while remaining:
                        for _ in range(10):
                            await probe(http, ids[-1], loaded)
                        sample = list(remaining)[:200]
                        pages = await asyncio.gather(*(http.get(f"/batches/{i}") for i in sample))
                        for page in pages:
                            if page.json()["status"] == "completed":
                                remaining.discard(page.json()["id"])
                        await asyncio.sleep(0.05)
                    total_s = time.perf_counter() - t0
        finally:
            emu.stop()

    # validating (1 s) + lines in waves of batch_concurrency + finalizing (1 s), emulated.
    waves = lines / KNOBS["batch_concurrency"]
    ideal_s = (2 + waves * KNOBS["line_latency_seconds"]) / KNOBS["time_scale"]
    p50_ratio = percentile(loaded, 0.5) / percentile(idle, 0.5)
    p99_ratio = percentile(loaded, 0.99) / percentile(idle, 0.99)
    print(f"batches x lines           {batches} x {lines} = {batches * lines} lines")
    print(f"baseline (idle) GET one + list   {summary_ms(idle)}")
    print(f"under load      GET one + list   {summary_ms(loaded)}")
    print(f"latency ratio load/idle          p50 {p50_ratio:.1f}x  p99 {p99_ratio:.1f}x")
    print(f"creates                          {batches / created_s:.0f}/s ({created_s:.2f} s)")
    print(
        f"all completed in                 {total_s:.2f} s; one batch alone needs {ideal_s:.2f} s"
        f"  ratio {total_s / ideal_s:.1f}x; {batches * lines / total_s:.0f} lines/s"
    )
    print(f"emulator peak RSS                {mem.peak / MB:.1f} MB (+{mem.growth / MB:.1f} MB)")


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--batches", type=int, default=1000)
    args.add_argument("--lines", type=int, default=10)
    opts = args.parse_args()
    asyncio.run(run(opts.batches, opts.lines))


if __name__ == "__main__":
    main()
