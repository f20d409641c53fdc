"""Object stores against real servers (moto's S3, Azurite): what a worker relies on."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from typing import Any

import pytest
from temporalio.exceptions import ApplicationError

from activities.failures import temporal_failures
from contracts.names import FAILURE_STORAGE_UNAVAILABLE
from devstack.storage_servers import ROOT, MotoServer, free_port
from storage import AccessDenied, LocationError, ObjectStorage, Stores
from storage.local import LocalStorage
from tests.storage.conftest import Backend

BIG_MB = 40  # five 8 MiB parts: a multipart upload that is still running when killed


async def test_round_trip(store: ObjectStorage, backend: Backend) -> None:
    location = backend.location("jobs/day 1/results.jsonl")
    data = b"".join(b'{"custom_id": "r-%d"}\n' % i for i in range(10_000))
    assert await store.size(location) is None
    async with store.atomic_write(location) as local:
        local.write_bytes(data)

    assert await store.exists(location)
    assert await store.size(location) == len(data)
    assert b"".join([chunk async for chunk in store.read_chunks(location)]) == data
    async with store.reading(location) as copy:
        assert copy.read_bytes() == data
    await store.delete(location)
    assert not await store.exists(location)
    await store.delete(location)  # already gone: not an error


async def test_a_failed_write_publishes_nothing_and_keeps_the_old_object(
    store: ObjectStorage, backend: Backend
) -> None:
    location = backend.location("out.jsonl")
    async with store.atomic_write(location) as local:
        local.write_bytes(b"old\n")
    with pytest.raises(RuntimeError):
        async with store.atomic_write(location) as local:
            local.write_bytes(b"half a fi")
            raise RuntimeError("crash mid-write")
    assert b"".join([c async for c in store.read_chunks(location)]) == b"old\n"


def _kill_mid_upload(location: str, backend: Backend) -> int:
    """Run a writer, SIGKILL it once the store holds its upload in flight; its exit code."""
    writer = subprocess.Popen(
        [sys.executable, "-m", "tests.storage.writer_child", location, str(BIG_MB)],
        cwd=ROOT,
        env=os.environ.copy(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert writer.stdout is not None
        assert writer.stdout.readline() == b"uploading\n", writer.stderr
        for _ in range(2000):
            if backend.uploads_in_flight() or writer.poll() is not None:
                break
            time.sleep(0.005)
        writer.send_signal(signal.SIGKILL)
        return writer.wait(timeout=10)
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait(timeout=10)


async def test_a_writer_killed_mid_upload_leaves_nothing_under_the_key(
    store: ObjectStorage, backend: Backend
) -> None:
    location = backend.location("killed/results.jsonl")
    returncode = await asyncio.to_thread(_kill_mid_upload, location, backend)
    assert returncode == -signal.SIGKILL, "the writer finished before it was killed"
    assert backend.uploads_in_flight() >= 1, "killed before the upload reached the store"
    assert not await store.exists(location)
    with pytest.raises(LocationError, match="no such file"):
        async with store.reading(location):
            pass


async def test_a_missing_bucket_is_one_line_naming_the_location(
    store: ObjectStorage, backend: Backend
) -> None:
    location = f"{backend.scheme}://no-such-bucket-{backend.bucket}/in.jsonl"
    with pytest.raises(LocationError) as caught:
        async with store.reading(location):
            pass
    assert str(caught.value) == f"{location}: no such bucket or container"
    with pytest.raises(LocationError, match=f"^{location}: no such bucket or container$"):
        await store.check(location)
    with pytest.raises(LocationError) as written:
        async with store.atomic_write(location) as local:
            local.write_bytes(b"x\n")
    message = str(written.value)
    assert message.startswith(f"{location}: ") and "\n" not in message


async def test_a_missing_object_is_a_location_error(store: ObjectStorage, backend: Backend) -> None:
    location = backend.location("absent.jsonl")
    with pytest.raises(LocationError, match=f"^{location}: no such file$"):
        async with store.reading(location):
            pass


def _denied_env(backend: Backend, moto_checking_credentials: MotoServer) -> dict[str, str]:
    if backend.scheme == "s3":
        return moto_checking_credentials.env(access_key="AKIANOTAUSER", secret_key="wrong")
    key = backend.env["AZURE_STORAGE_ACCOUNT_KEY"]
    return {**backend.env, "AZURE_STORAGE_ACCOUNT_KEY": "AAAA" + key[4:]}


async def test_a_denied_credential_is_one_line_naming_the_location_and_no_secret(
    backend: Backend, moto_checking_credentials: MotoServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = _denied_env(backend, moto_checking_credentials)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    location = backend.location("in.jsonl")
    store = ObjectStorage()
    for attempt in ("check", "read", "write"):
        with pytest.raises(AccessDenied) as caught:
            if attempt == "check":
                await store.check(location)
            elif attempt == "read":
                async with store.reading(location):
                    pass
            else:
                async with store.atomic_write(location) as local:
                    local.write_bytes(b"x\n")
        message = str(caught.value)
        assert message == (
            f"{location}: access denied to the credentials in the worker's environment"
        )
        assert not any(secret in message for secret in env.values() if len(secret) > 4)


async def test_check_passes_for_a_usable_location(store: ObjectStorage, backend: Backend) -> None:
    await store.check(backend.location("results/out.jsonl"))
    assert not await store.exists(backend.location("results/out.jsonl")), "check writes nothing"


async def test_an_unreachable_store_is_a_retryable_failure_naming_the_location(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")  # nothing listens
    monkeypatch.setenv("AWS_ALLOW_HTTP", "true")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing-secret")
    location = "s3://bucket/in.jsonl"
    with pytest.raises(ApplicationError) as caught:
        async with temporal_failures():
            async with ObjectStorage().reading(location):
                pass
    assert caught.value.type == FAILURE_STORAGE_UNAVAILABLE
    assert not caught.value.non_retryable
    assert caught.value.message.startswith(f"{location}: storage unavailable")
    assert "testing-secret" not in caught.value.message


def _stream(mode: str, location: str, megabytes: int) -> dict[str, Any]:
    child = subprocess.run(
        [sys.executable, "-m", "tests.storage.memory_child", mode, location, str(megabytes)],
        cwd=ROOT,
        env=os.environ.copy(),
        capture_output=True,
        timeout=240,
        check=True,
    )
    found: dict[str, Any] = json.loads(child.stdout)
    return found


def test_streaming_a_large_object_holds_chunks_not_the_object(backend: Backend) -> None:
    megabytes = 96
    location = backend.location("big/input.jsonl")
    written = _stream("write", location, megabytes)
    read = _stream("read", location, megabytes)
    assert written["bytes"] == read["bytes"] == megabytes * 1024 * 1024
    assert written["sha256"] == read["sha256"]
    # Parts up (2 of 5 MiB in flight) and chunks down (1 MiB), never the object.
    assert written["growth_mb"] < megabytes / 2, written
    assert read["growth_mb"] < megabytes / 3, read


@pytest.mark.parametrize(
    "location",
    [
        "s3://bucket",
        "s3://bucket/",
        "s3://bucket/folder/",
        "s3:///key",
        "gs://bucket/a/../b",
        "az://container/a//b",
        "s3://key:secret@bucket/x",
        "s3://bucket/x?versionId=1",
    ],
)
def test_malformed_object_locations_are_refused_before_any_io(location: str) -> None:
    with pytest.raises(LocationError, match="^" + location.replace("?", r"\?")):
        ObjectStorage().split(location)


def test_stores_pick_the_store_by_scheme(tmp_path) -> None:
    local = LocalStorage(tmp_path)
    objects = ObjectStorage()
    stores = Stores(local, objects)
    assert stores.store_for("jobs/in.jsonl") is local
    assert stores.store_for((tmp_path / "in.jsonl").as_uri()) is local
    for location in ("s3://b/k", "az://c/k", "gs://b/k"):
        assert stores.store_for(location) is objects
    with pytest.raises(LocationError, match="unknown scheme 'ftp'"):
        stores.store_for("ftp://host/in.jsonl")
