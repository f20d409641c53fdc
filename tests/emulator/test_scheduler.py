"""The scheduler in-process: counts and stored results never drift apart."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from emulator.knobs import Knobs
from emulator.models import BatchRecord, FileRecord
from emulator.scheduler import Scheduler
from emulator.store import Store
from tests.emulator.helpers import chat_file


async def _run_batch(tmp_path: Path, lines: int, fail_commits: int) -> tuple[BatchRecord, str]:
    store = Store(tmp_path)
    await store.open()
    knobs = Knobs(time_scale=1000, line_latency_seconds=0.5, batch_concurrency=2)
    sched = Scheduler(store, lambda: knobs)
    real_commit = store.commit_results
    failures = {"left": fail_commits}

    async def flaky_commit(*args: Any) -> None:
        if failures["left"] > 0:
            failures["left"] -= 1
            raise OSError("disk hiccup")
        await real_commit(*args)

    store.commit_results = flaky_commit  # type: ignore[method-assign]
    try:
        store.part_path("file-in").write_bytes(chat_file(lines))
        await store.add_file(
            FileRecord(id="file-in", filename="in.jsonl", purpose="batch", bytes=1, created_at=0)
        )
        await sched.start()
        created, expires, emu_now, emu_expires = sched.new_record_times(86_400)
        record = BatchRecord(
            id="batch_t",
            endpoint="/v1/chat/completions",
            input_file_id="file-in",
            completion_window="24h",
            created_at=created,
            expires_at=expires,
            emu_phase_started=emu_now,
            emu_expires=emu_expires,
        )
        await sched.create(record)
        for _ in range(500):
            stored = await store.get_batch("batch_t")
            if stored is not None and stored.status == "completed":
                break
            await asyncio.sleep(0.02)
        assert stored is not None and stored.output_file_id is not None
        return stored, store.blob_path(stored.output_file_id).read_text()
    finally:
        await sched.stop()
        await store.close()


@pytest.mark.parametrize("fail_commits", [0, 5])
async def test_failed_commits_neither_lose_nor_double_count_lines(
    tmp_path: Path, fail_commits: int
) -> None:
    record, output = await _run_batch(tmp_path, lines=40, fail_commits=fail_commits)

    counts = record.request_counts
    assert (counts.total, counts.completed, counts.failed) == (40, 40, 0)
    ids = [json.loads(line)["custom_id"] for line in output.splitlines()]
    assert sorted(ids) == sorted(f"req-{i}" for i in range(40))
