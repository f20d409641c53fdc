"""Many batches at once: every route keeps answering while they run."""

from __future__ import annotations

import asyncio
import time

import httpx

from devstack.emulator import EmulatorProcess
from tests.emulator.helpers import CHAT, chat_file

BATCHES = 300


async def test_routes_answer_while_hundreds_of_batches_run(emu: EmulatorProcess) -> None:
    # Each batch: 10 lines at 0.2 real s, 2 at a time, so all are in flight together.
    emu.set_knobs(line_latency_seconds=20, batch_concurrency=2)
    limits = httpx.Limits(max_connections=20)
    async with httpx.AsyncClient(base_url=emu.base_url, timeout=30, limits=limits) as http:
        up = await http.post(
            "/files", files={"file": ("b.jsonl", chat_file(10))}, data={"purpose": "batch"}
        )
        body = {"input_file_id": up.json()["id"], "endpoint": CHAT, "completion_window": "24h"}
        created = await asyncio.gather(*(http.post("/batches", json=body) for _ in range(BATCHES)))
        assert {r.status_code for r in created} == {200}
        ids = [r.json()["id"] for r in created]

        latencies: list[float] = []
        statuses: dict[str, str] = {}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            t0 = time.perf_counter()
            listed = await http.get("/batches", params={"limit": 100})
            one = await http.get(f"/batches/{ids[0]}")
            latencies.append(time.perf_counter() - t0)
            assert listed.status_code == one.status_code == 200
            pages = await asyncio.gather(*(http.get(f"/batches/{i}") for i in ids))
            statuses = {p.json()["id"]: p.json()["status"] for p in pages}
            if set(statuses.values()) == {"completed"}:
                break
            await asyncio.sleep(0.1)

    assert set(statuses.values()) == {"completed"}, set(statuses.values())
    assert max(latencies) < 1.0, max(latencies)
