"""The sharded job with its files in an object store (moto's S3 server), and what its
shards did with their files at the gateway, on the time-skipping server."""

from __future__ import annotations

import itertools
import json
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from contracts.job import BatchJobInput, JobStatus
from contracts.names import FAILURE_INVALID_JOB, PATCH_SHARDS_IN_STORE
from contracts.sharding import (
    LEFT_EXAMPLES,
    ShardedJobInput,
    ShardedJobResult,
    ShardedProgress,
    ShardingOptions,
)
from devstack.storage_servers import MotoServer
from storage import ObjectStorage
from tests.storage.conftest import moto  # noqa: F401  (session fixture)
from tests.workflows.shard_gateway import ShardGateway, write_input
from tests.workflows.test_sharded_job import sharded
from tests.workflows.test_upgrades import _patches

_buckets = itertools.count()


@pytest.fixture
def bucket(moto: MotoServer, monkeypatch: pytest.MonkeyPatch) -> str:  # noqa: F811
    name = f"sharded-wf-{next(_buckets)}"
    moto.create_bucket(name)
    for key, value in moto.env().items():
        monkeypatch.setenv(key, value)
    return f"s3://{name}"


async def read(location: str) -> list[str]:
    data = b"".join([chunk async for chunk in ObjectStorage().read_chunks(location)])
    return [json.loads(line)["custom_id"] for line in data.splitlines()]


def files_in(folder: Path) -> list[Path]:
    return list(folder.iterdir())


def transient_once(custom_id: str, sent: int) -> tuple[int, str] | None:
    return (500, "server_error") if custom_id == "req-0004" and sent == 0 else None


async def test_shard_files_live_beside_the_results_in_the_store_and_go_after_the_merge(
    time_skipping_env: WorkflowEnvironment, tmp_path: Path, bucket: str
) -> None:
    ids = write_input(tmp_path / "in.jsonl", 9)
    await ObjectStorage().put_file(f"{bucket}/in/day.jsonl", tmp_path / "in.jsonl")
    (tmp_path / "in.jsonl").unlink()
    request = ShardedJobInput(
        job=BatchJobInput(
            input_path=f"{bucket}/in/day.jsonl",
            output_path=f"{bucket}/out/day.results.jsonl",
            errors_path=f"{bucket}/out/day.errors.jsonl",
            poll_interval=timedelta(seconds=30),
        ),
        sharding=ShardingOptions(max_batch_requests=2, max_concurrent_batches=2),
    )
    gateway = ShardGateway(tmp_path, rule=transient_once)
    async with gateway.serving(time_skipping_env) as start:
        handle = await start(request)
        result = await handle.result()
        history = await handle.fetch_history()

    assert isinstance(result, ShardedJobResult)
    assert result.status is JobStatus.SUCCEEDED, result.reason
    assert (result.shards, result.rounds, result.recovered) == (5 + 1, 2, 1)
    assert await read(f"{bucket}/out/day.results.jsonl") == ids, "input order, each once"
    assert await read(f"{bucket}/out/day.errors.jsonl") == []
    assert result.work_dir == f"{bucket}/out/.shards/{handle.id}"
    left = await ObjectStorage().locations_under(f"{bucket}/out")
    assert sorted(left) == [
        f"{bucket}/out/.day.errors.jsonl.written-by",  # results are create-only: whose they are
        f"{bucket}/out/.day.results.jsonl.written-by",
        f"{bucket}/out/day.errors.jsonl",
        f"{bucket}/out/day.results.jsonl",
    ]
    assert files_in(tmp_path) == [], "nothing on the data directory"
    assert _patches(history) == [PATCH_SHARDS_IN_STORE], "a new job takes the store path"


async def test_the_parent_counts_its_shards_gateway_files_and_names_a_few_left(
    time_skipping_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    write_input(tmp_path / "in.jsonl", 14)
    deleting = await _run(time_skipping_env, tmp_path, keep=False)
    assert deleting.gateway_files is not None
    # Each of the 7 children deleted its upload and its batch's output file.
    assert (deleting.gateway_files.deleted, deleting.gateway_files.left) == (14, 0)
    assert deleting.gateway_files.left_examples == {}

    keeping = await _run(time_skipping_env, tmp_path, keep=True)
    assert keeping.gateway_files is not None
    assert (keeping.gateway_files.deleted, keeping.gateway_files.left) == (0, 14)
    assert len(keeping.gateway_files.left_examples) == LEFT_EXAMPLES
    assert set(keeping.gateway_files.left_examples.values()) == {
        "kept on request (keep_gateway_files)"
    }


async def _run(env: WorkflowEnvironment, root: Path, *, keep: bool) -> ShardedJobResult:
    request = sharded(max_batch_requests=2, max_concurrent_batches=3)
    request.job = request.job.model_copy(
        update={
            "keep_gateway_files": keep,
            "output_path": f"keep-{keep}.jsonl",
            "errors_path": f"keep-{keep}.errors.jsonl",
        }
    )
    async with ShardGateway(root).serving(env) as start:
        result = await (await start(request)).result()
    assert isinstance(result, ShardedJobResult)
    return result


async def test_a_callers_carried_folder_deletes_nothing(
    time_skipping_env: WorkflowEnvironment, tmp_path: Path, bucket: str
) -> None:
    """`carried` is the job's own state across continue-as-new: a caller's is refused at start."""
    prod = [f"{bucket}/prod/ledger.jsonl", f"{bucket}/prod/round-0/shard-00000.jsonl"]
    for location in prod:
        await ObjectStorage().put_file(location, write_path(tmp_path / "x.jsonl"))
    write_input(tmp_path / "in.jsonl", 4)
    await ObjectStorage().put_file(f"{bucket}/in/day.jsonl", tmp_path / "in.jsonl")
    request = ShardedJobInput(
        job=BatchJobInput(
            input_path=f"{bucket}/in/day.jsonl", output_path=f"{bucket}/out/day.results.jsonl"
        ),
        sharding=ShardingOptions(max_batch_requests=2),
        carried=ShardedProgress(work_dir=f"{bucket}/prod"),
    )
    gateway = ShardGateway(tmp_path)
    async with gateway.serving(time_skipping_env) as start:
        handle = await start(request)
        with pytest.raises(WorkflowFailureError) as caught:
            await handle.result()

    assert isinstance(caught.value.cause, ApplicationError)
    assert caught.value.cause.type == FAILURE_INVALID_JOB
    assert "a caller may not send it" in caught.value.cause.message
    assert sorted(await ObjectStorage().locations_under(f"{bucket}/prod")) == sorted(prod)
    assert await ObjectStorage().locations_under(f"{bucket}/out") == []
    assert gateway.creates == 0


def write_path(path: Path) -> Path:
    path.write_text("someone else's data\n")
    return path
