"""The starter's copies to and from BATCH_STORE, against moto's S3 server."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import pytest

from cli.exits import UsageError
from cli.locations import JobFiles, Transfer, plan_job_files
from cli.transfers import bring_back, remove_job_copies, upload_input
from contracts.constants import ENV_BATCH_STORE, ENV_DATA_DIR
from devstack.storage_servers import MotoServer
from storage import ObjectStorage
from tests.storage.conftest import moto  # noqa: F401  (session fixture)

_buckets = itertools.count()


@pytest.fixture
def bucket(
    moto: MotoServer,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> str:
    name = f"starter-{next(_buckets)}"
    moto.create_bucket(name)
    for key, value in moto.env().items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv(ENV_BATCH_STORE, f"s3://{name}/batches/")
    monkeypatch.setenv(ENV_DATA_DIR, str(tmp_path))
    monkeypatch.chdir(tmp_path)
    return name


async def _read(location: str) -> bytes:
    return b"".join([chunk async for chunk in ObjectStorage().read_chunks(location)])


async def _write(location: str, data: bytes) -> None:
    async with ObjectStorage().atomic_write(location) as local:
        local.write_bytes(data)


async def test_the_input_goes_up_and_the_results_come_back_whole(bucket: str, tmp_path: Path):
    (tmp_path / "day.jsonl").write_bytes(b'{"custom_id": "a"}\n')
    files = plan_job_files("day.jsonl", "out/results.jsonl", None, "job-1.x")
    await upload_input(files)
    assert files.upload is not None
    assert await _read(files.upload.remote) == b'{"custom_id": "a"}\n'

    assert files.output_path is not None
    await _write(files.output_path, b"results\n" * 1000)
    # No errors file in the store (a job that ended before writing it): nothing written locally.
    brought = await bring_back(files)
    assert [t.local for t in brought] == [tmp_path / "out" / "results.jsonl"]
    assert (tmp_path / "out" / "results.jsonl").read_bytes() == b"results\n" * 1000
    assert not (tmp_path / "day.errors.jsonl").exists()
    assert await asyncio.to_thread(lambda: list(tmp_path.rglob(".*.part"))) == []

    await remove_job_copies(files)
    assert not await ObjectStorage().exists(files.upload.remote)
    assert not await ObjectStorage().exists(files.output_path)


async def test_only_the_starters_own_copies_are_removed(bucket: str, tmp_path: Path):
    named = f"s3://{bucket}/mine/results.jsonl"
    await _write(named, b"keep me\n")
    (tmp_path / "day.jsonl").write_bytes(b"{}\n")
    files = plan_job_files("day.jsonl", named, None, "job-2.x")
    await upload_input(files)
    await remove_job_copies(files)
    assert await _read(named) == b"keep me\n"


async def test_a_missing_bucket_is_one_line_naming_the_location(
    bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv(ENV_BATCH_STORE, f"s3://no-such-{bucket}/batches")
    (tmp_path / "day.jsonl").write_bytes(b"{}\n")
    files = plan_job_files("day.jsonl", None, None, "job-3.x")
    with pytest.raises(UsageError) as raised:
        await upload_input(files)
    message = str(raised.value)
    assert "\n" not in message
    assert f"s3://no-such-{bucket}/batches/job-3.x/input.jsonl" in message
    assert "no such bucket" in message


async def test_a_result_the_job_never_wrote_leaves_the_local_file_as_it_was(
    bucket: str, tmp_path: Path
):
    (tmp_path / "results.jsonl").write_bytes(b"yesterday\n")
    never_written = Transfer(tmp_path / "results.jsonl", f"s3://{bucket}/batches/j/output.jsonl")
    assert await bring_back(JobFiles("s3://x/in.jsonl", bring_back=(never_written,))) == []
    assert (tmp_path / "results.jsonl").read_bytes() == b"yesterday\n"
