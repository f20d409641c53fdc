"""Jobs whose files live in object stores (moto's S3 server, Azurite), on real processes.

The worker's BATCH_DATA_DIR and the starter's are different folders, neither
seeing the other's files: every byte between them goes through the store.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from contracts.job import BatchJobResult, JobStatus
from devstack.storage_servers import Azurite, MotoServer
from storage import ObjectStorage
from tests.cli.starter_process import StarterProcess
from tests.e2e.conftest import Stack
from tests.e2e.helpers import fast_job, start
from tests.e2e.slow_proxy import SlowUploadProxy
from tests.storage.conftest import azurite, moto  # noqa: F401  (session fixtures)

pytestmark = pytest.mark.e2e

# Keys nobody else uses, so the test can tell they never reach workflow history.
ACCESS_KEY = "AKIAOBJWIREE2ETEST01"
SECRET_KEY = "objwire-e2e-secret-never-in-history"

_names = itertools.count()


@pytest.fixture
def stores(
    moto: MotoServer,  # noqa: F811
    azurite: Azurite,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[dict[str, str]]:
    """A fresh bucket and container; the environment that reaches both, set here too."""
    n = next(_names)
    moto.create_bucket(f"batches-{n}")
    azurite.create_container(f"batches-{n}")
    env = {**moto.env(access_key=ACCESS_KEY, secret_key=SECRET_KEY), **azurite.env()}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    # The workers' allow-list: the bucket and container, and their data directory.
    allowed = {"BATCH_ALLOWED_LOCATIONS": f"s3://batches-{n}, az://batches-{n}, ."}
    yield {**env, **allowed, "s3": f"s3://batches-{n}", "az": f"az://batches-{n}"}


def request_lines(count: int, *, endpoint: str = "/v1/chat/completions", dims: int = 0) -> bytes:
    lines = []
    for i in range(count):
        body: dict[str, object]
        if endpoint == "/v1/embeddings":
            body = {"model": "text-embedding-3-small", "input": f"item {i}", "dimensions": dims}
        else:
            body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"item {i}"}]}
        lines.append(
            json.dumps({"custom_id": f"req-{i}", "method": "POST", "url": endpoint, "body": body})
        )
    return ("\n".join(lines) + "\n").encode()


def ids_of(data: bytes) -> list[str]:
    return [json.loads(line)["custom_id"] for line in data.splitlines() if line.strip()]


def assert_every_request_once(*files: bytes, count: int) -> None:
    seen = [cid for data in files for cid in ids_of(data)]
    assert [cid for cid, n in Counter(seen).items() if n > 1] == []
    assert sorted(seen) == sorted(f"req-{i}" for i in range(count))


async def put(location: str, data: bytes) -> None:
    async with ObjectStorage().atomic_write(location) as local:
        local.write_bytes(data)


async def get(location: str) -> bytes:
    return b"".join([chunk async for chunk in ObjectStorage().read_chunks(location)])


def keys_under(moto: MotoServer, bucket: str) -> list[str]:  # noqa: F811
    listing = httpx.get(f"{moto.url}/{bucket}?list-type=2", timeout=10).raise_for_status().text
    return [part.split("</Key>")[0] for part in listing.split("<Key>")[1:]]


async def history_text(stack: Stack, workflow_id: str) -> str:
    history = await stack.client.get_workflow_handle(workflow_id).fetch_history()
    return json.dumps(history.to_json_dict())


def starter_env(stack: Stack, starter_dir: Path, **extra: str) -> dict[str, str]:
    return {
        "TEMPORAL_ADDRESS": stack.address,
        "TEMPORAL_NAMESPACE": "default",
        "TEMPORAL_TASK_QUEUE": stack.task_queue,
        "BATCH_DATA_DIR": str(starter_dir),
        **extra,
    }


async def test_local_inputs_run_through_batch_store_with_no_shared_disk(
    stack: Stack,
    stores: dict[str, str],
    moto: MotoServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    """Two jobs from one local file at once: own keys, results back where each was asked."""
    laptop = tmp_path / "laptop"
    laptop.mkdir()
    (laptop / "day.jsonl").write_bytes(request_lines(25))
    bucket = stores["s3"].removeprefix("s3://")
    env = starter_env(stack, laptop, BATCH_STORE=f"{stores['s3']}/batches/")
    common = ["--poll-seconds", "1"]
    with stack.worker(**{k: v for k, v in stores.items() if k.isupper()}):
        brought = StarterProcess(
            tmp_path / "logs-a", env, "run", str(laptop / "day.jsonl"), "--output",
            str(laptop / "out" / "a.jsonl"), "--id", "local-a", *common,
        )  # fmt: skip
        kept = StarterProcess(
            tmp_path / "logs-b", env, "run", str(laptop / "day.jsonl"), "--output",
            str(laptop / "b.jsonl"), "--id", "local-b", "--keep-remote", *common,
        )  # fmt: skip
        started = StarterProcess(
            tmp_path / "logs-c", env, "start", str(laptop / "day.jsonl"), "--id", "local-c",
            "--poll-seconds", "1",
        )  # fmt: skip
        assert await brought.exit_code() == 0, brought.stderr()
        assert await kept.exit_code() == 0, kept.stderr()
        assert await started.exit_code() == 0, started.stderr()
        assert started.stdout().strip() == "local-c"
        # start says where the results will be, and they arrive there.
        [announced] = [x for x in started.stderr().splitlines() if x.startswith("results:")]
        start_result = await stack.client.get_workflow_handle(
            "local-c", result_type=BatchJobResult
        ).result()
        assert announced.split()[1] == start_result.output_path
        assert_every_request_once(
            await get(start_result.output_path), await get(start_result.errors_path), count=25
        )

    assert_every_request_once(
        (laptop / "out" / "a.jsonl").read_bytes(),
        (laptop / "day.errors.jsonl").read_bytes(),
        count=25,
    )
    assert f"results:  {laptop / 'out' / 'a.jsonl'}" in brought.stdout()
    assert not list(laptop.rglob(".*.part"))
    assert list(stack.data_dir.iterdir()) == [], "the worker used its own disk"

    # --keep-remote: nothing written locally, the URIs printed, the copies left in the store.
    assert not (laptop / "b.jsonl").exists()
    [printed] = [line for line in kept.stdout().splitlines() if line.startswith("results:")]
    remote_output = printed.split()[1]
    assert remote_output.startswith(f"{stores['s3']}/batches/local-b.")
    assert_every_request_once(await get(remote_output), count=25)
    left = keys_under(moto, bucket)
    kept_keys = [key for key in left if key.startswith("batches/local-b.")]
    marks = [key for key in kept_keys if key.endswith(".written-by")]
    assert len(kept_keys) - len(marks) == 3, "input, output and errors of the kept job"
    assert len(marks) == 2, "which job wrote its output and errors (results are create-only)"
    assert not [key for key in left if key.startswith("batches/local-a.")], "copies not removed"

    for workflow_id in ("local-a", "local-b", "local-c"):
        history = await history_text(stack, workflow_id)
        assert SECRET_KEY not in history and ACCESS_KEY not in history
        assert str(laptop) not in history, "a local path reached the workflow"


@pytest.mark.parametrize("scheme", ["s3", "az"])
async def test_a_job_reads_and_writes_uris_the_worker_alone_can_reach(
    stack: Stack, stores: dict[str, str], tmp_path: Path, scheme: str
) -> None:
    root = stores[scheme]
    await put(f"{root}/in/day.jsonl", request_lines(30))
    laptop = tmp_path / "laptop"
    laptop.mkdir()
    # The starter gets no storage credentials: URIs pass through it untouched.
    env = {k: "" for k in stores if k.isupper()} | starter_env(stack, laptop)
    with stack.worker(**{k: v for k, v in stores.items() if k.isupper()}):
        run = StarterProcess(
            tmp_path / "logs", env, "run", f"{root}/in/day.jsonl", "--output",
            f"{root}/out/day.results.jsonl", "--poll-seconds", "1",
        )  # fmt: skip
        assert await run.exit_code() == 0, run.stderr()
    assert f"results:  {root}/out/day.results.jsonl" in run.stdout()
    assert_every_request_once(
        await get(f"{root}/out/day.results.jsonl"),
        await get(f"{root}/in/day.errors.jsonl"),
        count=30,
    )
    assert list(laptop.iterdir()) == []


async def test_a_worker_killed_mid_publish_leaves_no_partial_results(
    stack: Stack,
    stores: dict[str, str],
    moto: MotoServer,  # noqa: F811
) -> None:
    """SIGKILL while the results stream to S3: the key stays empty, the next worker writes it."""
    count = 500
    bucket = stores["s3"].removeprefix("s3://")
    source, output = f"{stores['s3']}/in/big.jsonl", f"{stores['s3']}/out/big.output.jsonl"
    await put(source, request_lines(count, endpoint="/v1/embeddings", dims=1024))
    stack.emulator.set_knobs(line_latency_seconds=0.001)
    env = {k: v for k, v in stores.items() if k.isupper()}
    job = fast_job(input_path=source, output_path=output, endpoint="/v1/embeddings")
    watch = f"PUT /{bucket}/out/big.output.jsonl".encode()
    async with SlowUploadProxy(
        moto.port, watch, bytes_per_second=512 * 1024, after_bytes=256 * 1024
    ) as proxy:
        doomed = stack.worker("doomed", **{**env, "AWS_ENDPOINT_URL": proxy.url})
        with doomed:
            handle = await start(stack, job, prefix="killed-publish")
            await asyncio.wait_for(proxy.mid_upload.wait(), 90)
            doomed.kill()
        assert not await ObjectStorage().exists(output), "a partial object under the final key"

    with stack.worker("successor", **env):
        result = await asyncio.wait_for(handle.result(), 120)
    assert result.status is JobStatus.SUCCEEDED
    published = await get(output)
    assert len(published) > 2 * 1024 * 1024, "small enough to publish in one go: not a test"
    assert_every_request_once(published, await get(result.errors_path), count=count)
    assert all(json.loads(line)["response"] for line in published.splitlines())
