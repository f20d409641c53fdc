"""The files routes, through the official SDK and raw HTTP."""

from __future__ import annotations

import hashlib

import httpx
import openai
import pytest

from devstack.emulator import EmulatorProcess
from tests.emulator.helpers import chat_file, upload


def test_sdk_upload_retrieve_content_and_delete(client: openai.OpenAI) -> None:
    data = chat_file(3)
    created = client.files.create(file=("mine.jsonl", data), purpose="batch")

    assert created.id.startswith("file-")
    assert (created.object, created.bytes, created.filename) == ("file", len(data), "mine.jsonl")
    assert (created.purpose, created.status) == ("batch", "processed")
    assert client.files.retrieve(created.id) == created
    assert client.files.content(created.id).content == data

    deleted = client.files.delete(created.id)
    assert deleted.deleted and deleted.id == created.id
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(created.id)
    with pytest.raises(openai.NotFoundError):
        client.files.content(created.id)


@pytest.mark.parametrize(
    ("path", "status"),
    [("/files", 201), ("/v1/files", 200), ("/openai/files?api-version=2025-01-01-preview", 201)],
)
def test_upload_status_follows_the_gateway_it_emulates(
    http: httpx.Client, path: str, status: int
) -> None:
    resp = http.post(path, files={"file": ("b.jsonl", b"{}\n")}, data={"purpose": "batch"})

    assert resp.status_code == status
    assert resp.json()["status"] == "processed"


def test_list_filters_by_purpose_and_pages_newest_first(client: openai.OpenAI) -> None:
    ids = [upload(client, chat_file(1, prefix=f"p{i}")) for i in range(3)]
    other = client.files.create(file=("x.txt", b"hi"), purpose="user_data").id

    batch_files = [f.id for f in client.files.list(purpose="batch", limit=10_000)]
    assert other not in batch_files
    assert batch_files[:3] == ids[::-1]

    first = client.files.list(purpose="batch", limit=2)
    assert [f.id for f in first.data] == ids[::-1][:2]
    assert first.has_more
    second = client.files.list(purpose="batch", limit=1, after=ids[1])
    assert [f.id for f in second.data] == [ids[0]]

    ascending = [f.id for f in client.files.list(purpose="batch", order="asc")]
    assert ascending.index(ids[0]) < ascending.index(ids[2])


def test_errors_are_shaped_like_openai(http: httpx.Client) -> None:
    missing = http.get("/files/file-nope")
    assert missing.status_code == 404
    err = missing.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert "file-nope" in err["message"]

    no_purpose = http.post("/files", files={"file": ("b.jsonl", b"{}\n")})
    assert no_purpose.status_code == 400
    assert no_purpose.json()["error"]["param"] == "purpose"

    bad_purpose = http.post("/files", files={"file": ("b.jsonl", b"{}\n")}, data={"purpose": "x"})
    assert bad_purpose.status_code == 400

    no_file = http.post("/files", data={"purpose": "batch"})
    assert no_file.status_code == 400

    unknown_route = http.get("/nothing-here")
    assert unknown_route.status_code == 404
    assert "error" in unknown_route.json()


def test_upload_over_the_size_limit_is_413(emu: EmulatorProcess, http: httpx.Client) -> None:
    emu.set_knobs(max_file_bytes=1000)

    resp = http.post("/files", files={"file": ("b.jsonl", b"x" * 5000)}, data={"purpose": "batch"})

    assert resp.status_code == 413
    assert resp.json()["error"]["code"] == "file_too_large"
    small = http.post("/files", files={"file": ("b.jsonl", b"x" * 900)}, data={"purpose": "batch"})
    assert small.status_code == 201


def test_a_large_file_round_trips_byte_for_byte(http: httpx.Client) -> None:
    block = hashlib.sha256(b"seed").digest() * 32_768  # 1 MiB of varied bytes
    data = block * 24
    resp = http.post("/v1/files", files={"file": ("big.jsonl", data)}, data={"purpose": "batch"})
    assert resp.status_code == 200
    file_id = resp.json()["id"]

    digest = hashlib.sha256()
    size = 0
    with http.stream("GET", f"/files/{file_id}/content") as stream:
        assert stream.status_code == 200
        for chunk in stream.iter_bytes():
            digest.update(chunk)
            size += len(chunk)

    assert size == len(data) == resp.json()["bytes"]
    assert digest.hexdigest() == hashlib.sha256(data).hexdigest()
