"""The sharded parent's history for the replay test: python -m tests.replay.capture_sharded

One job with a quota refusal, a permanent and a transient failure, and a
resubmission round, on the time-skipping server with real shard files.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from pathlib import Path

from devstack.temporal import start_time_skipping
from tests.workflows.shard_gateway import ShardGateway, write_input
from tests.workflows.test_sharded_job import sharded

HISTORIES = Path(__file__).parent / "histories"


def rule(custom_id: str, sent: int) -> tuple[int, str] | None:
    if custom_id == "req-0001" and sent == 0:
        return 429, "rate_limit_exceeded"
    if custom_id == "req-0004":
        return 400, "invalid_request_error"
    return None


async def main() -> None:
    env = await start_time_skipping()
    try:
        with tempfile.TemporaryDirectory() as folder:
            root = Path(folder)
            write_input(root / "in.jsonl", 9)
            gateway = ShardGateway(root, rule=rule, quota_refusals=1)
            async with gateway.serving(env) as start:
                handle = await start(sharded(max_batch_requests=2, max_concurrent_batches=2))
                await handle.result()
                history = await handle.fetch_history()
        record = {"workflow_id": handle.id, "history": json.loads(history.to_json())}
        (HISTORIES / "sharded.json").write_text(json.dumps(record, indent=1) + "\n")
        print(f"sharded: {len(history.events)} events")
    finally:
        await env.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
