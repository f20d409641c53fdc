"""A sharded job whose files are in S3 (moto's server), on real processes, with no shared disk.

The worker's BATCH_DATA_DIR and the starter's are different folders: the
split, every shard's child and the merge meet only in the store.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from contracts.names import SHARDED_JOB_WORKFLOW_NAME
from devstack.storage_servers import MotoServer
from tests.cli.starter_process import StarterProcess
from tests.cli.test_rerun_attach_cancel import gateway_batches
from tests.e2e.conftest import Stack
from tests.e2e.test_object_store_jobs import get, keys_under, put, request_lines, starter_env
from tests.storage.conftest import moto  # noqa: F401  (session fixture)

pytestmark = pytest.mark.e2e

REQUESTS, PER_SHARD = 10, 4  # three shards
_buckets = itertools.count()


@pytest.fixture
def bucket(
    moto: MotoServer,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[tuple[str, dict[str, str]]]:
    name = f"sharded-{next(_buckets)}"
    moto.create_bucket(name)
    env = moto.env()
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    yield f"s3://{name}", {**env, "BATCH_ALLOWED_LOCATIONS": f"s3://{name}, ."}


def ids_of(data: bytes) -> list[str]:
    return [json.loads(line)["custom_id"] for line in data.splitlines() if line.strip()]


def keys_in(moto: MotoServer, root: str) -> list[str]:  # noqa: F811
    return sorted(keys_under(moto, root.removeprefix("s3://")))


def assert_sharded(stack: Stack, run: StarterProcess) -> None:
    assert f"shards:   {-(-REQUESTS // PER_SHARD)} in 1 round(s)" in run.stdout(), run.stdout()
    assert list(stack.data_dir.iterdir()) == [], "the worker used its own disk"


async def test_a_sharded_job_with_s3_input_and_results_shares_no_disk(
    stack: Stack,
    bucket: tuple[str, dict[str, str]],
    moto: MotoServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    root, env = bucket
    await put(f"{root}/in/day.jsonl", request_lines(REQUESTS))
    laptop = tmp_path / "laptop"
    laptop.mkdir()
    # The starter gets no storage credentials: URIs pass through it untouched.
    starter = {k: "" for k in env} | starter_env(stack, laptop)
    with stack.worker(**env):
        run = StarterProcess(
            tmp_path / "logs", starter, "run", f"{root}/in/day.jsonl", "--output",
            f"{root}/out/day.results.jsonl", "--errors", f"{root}/out/day.errors.jsonl",
            "--max-batch-requests", str(PER_SHARD), "--poll-seconds", "1", "--id", "sharded-s3",
        )  # fmt: skip
        assert await run.exit_code() == 0, run.stderr()

    assert_sharded(stack, run)
    results = ids_of(await get(f"{root}/out/day.results.jsonl"))
    assert results == [f"req-{i}" for i in range(REQUESTS)], "every custom_id once, input order"
    assert ids_of(await get(f"{root}/out/day.errors.jsonl")) == []
    assert keys_in(moto, root) == [
        "in/day.jsonl",
        "out/.day.errors.jsonl.written-by",  # results are create-only: which job wrote them
        "out/.day.results.jsonl.written-by",
        "out/day.errors.jsonl",
        "out/day.results.jsonl",
    ], "shard inputs, results, errors, indexes, plans and marks removed after the merge"
    assert list(laptop.iterdir()) == []
    history = await stack.client.get_workflow_handle("sharded-s3").fetch_history()
    assert history.events[0].workflow_execution_started_event_attributes.workflow_type.name == (
        SHARDED_JOB_WORKFLOW_NAME
    )


async def test_a_local_input_sent_through_batch_store_runs_sharded_and_comes_back(
    stack: Stack,
    bucket: tuple[str, dict[str, str]],
    moto: MotoServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    root, env = bucket
    laptop = tmp_path / "laptop"
    laptop.mkdir()
    (laptop / "day.jsonl").write_bytes(request_lines(REQUESTS))
    starter = starter_env(stack, laptop, BATCH_STORE=f"{root}/batches/")
    with stack.worker(**env):
        run = StarterProcess(
            tmp_path / "logs", starter, "run", str(laptop / "day.jsonl"), "--output",
            str(laptop / "day.results.jsonl"), "--max-batch-requests", str(PER_SHARD),
            "--poll-seconds", "1", "--id", "sharded-local",
        )  # fmt: skip
        assert await run.exit_code() == 0, run.stderr()

    assert_sharded(stack, run)
    results = ids_of((laptop / "day.results.jsonl").read_bytes())
    assert results == [f"req-{i}" for i in range(REQUESTS)], "every custom_id once, input order"
    assert ids_of((laptop / "day.errors.jsonl").read_bytes()) == []
    assert keys_in(moto, root) == [], "the job's copies and its shard files removed"


async def test_the_same_sharded_command_twice_through_batch_store_is_one_job(
    stack: Stack,
    bucket: tuple[str, dict[str, str]],
    moto: MotoServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    root, env = bucket
    laptop = tmp_path / "laptop"
    laptop.mkdir()
    (laptop / "day.jsonl").write_bytes(request_lines(REQUESTS))
    starter = starter_env(stack, laptop, BATCH_STORE=f"{root}/batches/")
    command = (
        "run", str(laptop / "day.jsonl"), "--output", str(laptop / "day.results.jsonl"),
        "--max-batch-requests", str(PER_SHARD), "--poll-seconds", "1",
    )  # fmt: skip
    shards = -(-REQUESTS // PER_SHARD)
    # The batches validate until the test lets them go: the first job surely still runs.
    stack.emulator.set_knobs(validating_seconds=600)
    with stack.worker(**env):
        first = StarterProcess(tmp_path / "first", starter, *command)
        second: StarterProcess | None = None
        try:
            await first.stderr_shows("started ")
            for _ in range(600):
                if len(gateway_batches(stack)) >= shards:
                    break
                await asyncio.sleep(0.1)
            second = StarterProcess(tmp_path / "second", starter, *command)
            await second.stderr_shows("; following it")
            copies = [key for key in keys_in(moto, root) if key.endswith("/input.jsonl")]
            assert len(copies) == 1, f"the second run removed its own copy only: {copies}"
            stack.emulator.set_knobs(validating_seconds=0.5)
            codes = (await first.exit_code(180), await second.exit_code(180))
        finally:
            first.kill()
            if second is not None:
                second.kill()
    assert second is not None
    assert codes == (0, 0), first.stderr() + second.stderr()
    assert len(gateway_batches(stack)) == shards, "each shard's batch made once"
    assert stack.emulator.successes_by_custom_id("req-") == {
        f"req-{i}": 1 for i in range(REQUESTS)
    }, "every request ran to success in one batch"
    results = ids_of((laptop / "day.results.jsonl").read_bytes())
    assert results == [f"req-{i}" for i in range(REQUESTS)], "every custom_id once, input order"
    assert keys_in(moto, root) == [], "the job's copies and shard files removed, none left over"
