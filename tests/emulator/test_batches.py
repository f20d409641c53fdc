"""The batch lifecycle with the built-in model, through the official SDK."""

from __future__ import annotations

import json
import time

import httpx
import openai
import pytest

from devstack.emulator import EmulatorProcess
from tests.emulator.helpers import (
    CHAT,
    MODEL,
    chat_file,
    chat_line,
    jsonl,
    read_jsonl,
    submit,
    upload,
    wait_for,
)


def test_batch_runs_to_completed_with_rising_counts(
    emu: EmulatorProcess, client: openai.OpenAI
) -> None:
    # 40 lines, 4 at a time, 0.1 emulated s each: about a second of real time.
    emu.set_knobs(line_latency_seconds=10, batch_concurrency=4)
    batch = submit(client, chat_file(40), metadata={"job": "t1"})
    assert batch.status == "validating"
    assert batch.metadata == {"job": "t1"}
    assert batch.expires_at is not None and batch.expires_at > batch.created_at

    seen: list[tuple[str, int]] = []
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        b = client.batches.retrieve(batch.id)
        assert b.request_counts is not None
        seen.append((b.status, b.request_counts.completed))
        if b.status == "completed":
            break
        time.sleep(0.02)
    statuses = [s for s, _ in seen]
    assert statuses[-1] == "completed"
    assert "in_progress" in statuses and "finalizing" in statuses
    progress = [n for s, n in seen if s == "in_progress"]
    assert progress == sorted(progress) and len(set(progress)) > 2, progress

    done = client.batches.retrieve(batch.id)
    assert done.request_counts is not None
    assert (done.request_counts.total, done.request_counts.completed) == (40, 40)
    assert done.request_counts.failed == 0
    assert done.model == MODEL
    for stamp in (done.in_progress_at, done.finalizing_at, done.completed_at):
        assert stamp is not None and stamp >= done.created_at
    assert done.error_file_id is None
    assert done.usage is not None and done.usage.total_tokens > 0

    lines = read_jsonl(client, done.output_file_id)
    assert sorted(line["custom_id"] for line in lines) == sorted(f"req-{i}" for i in range(40))
    assert [line["custom_id"] for line in lines] != [f"req-{i}" for i in range(40)]
    first = lines[0]
    assert set(first) == {"id", "custom_id", "response", "error"}
    assert first["id"].startswith("batch_req_") and first["error"] is None
    response = first["response"]
    assert response["status_code"] == 200 and response["request_id"].startswith("req_")
    body = response["body"]
    assert body["object"] == "chat.completion" and body["model"] == MODEL
    assert body["choices"][0]["message"]["role"] == "assistant"
    usage = body["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] > 0


def _bodies(client: openai.OpenAI, batch_id: str) -> dict[str, dict[str, object]]:
    batch = wait_for(client, batch_id, {"completed"})
    out = {}
    for line in read_jsonl(client, batch.output_file_id):
        body = dict(line["response"]["body"])
        body.pop("created", None)
        body.pop("created_at", None)
        out[line["custom_id"]] = body
    return out


def test_same_input_gives_same_output(client: openai.OpenAI) -> None:
    data = chat_file(5)
    first = submit(client, data)
    second = submit(client, data)

    assert _bodies(client, first.id) == _bodies(client, second.id)


@pytest.mark.parametrize(
    ("endpoint", "body", "object_type"),
    [
        (
            "/v1/completions",
            {"model": "gpt-3.5-turbo-instruct", "prompt": "Say hi"},
            "text_completion",
        ),
        ("/v1/embeddings", {"model": "text-embedding-3-small", "input": "hello"}, "list"),
        ("/v1/responses", {"model": MODEL, "input": "Say hi"}, "response"),
    ],
)
def test_other_endpoints_get_well_formed_bodies(
    client: openai.OpenAI, endpoint: str, body: dict[str, object], object_type: str
) -> None:
    line = {"custom_id": "only", "method": "POST", "url": endpoint, "body": body}
    batch = submit(client, jsonl([line]), endpoint=endpoint)
    done = wait_for(client, batch.id, {"completed"})

    (out,) = read_jsonl(client, done.output_file_id)
    result = out["response"]["body"]
    assert result["object"] == object_type
    if endpoint == "/v1/embeddings":
        vector = result["data"][0]["embedding"]
        assert len(vector) > 8 and abs(sum(v * v for v in vector) - 1.0) < 1e-3
        assert result["usage"]["prompt_tokens"] > 0
    elif endpoint == "/v1/completions":
        assert result["choices"][0]["text"].strip()
        assert result["usage"]["completion_tokens"] > 0
    else:
        assert result["output"][0]["content"][0]["text"]
        assert result["usage"]["total_tokens"] > 0


def test_max_tokens_truncates_with_finish_reason_length(client: openai.OpenAI) -> None:
    batch = submit(client, jsonl([chat_line("short", "tell me a story", max_tokens=3)]))
    done = wait_for(client, batch.id, {"completed"})

    (out,) = read_jsonl(client, done.output_file_id)
    body = out["response"]["body"]
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 3


def test_a_request_the_model_rejects_lands_in_the_error_file(client: openai.OpenAI) -> None:
    bad = {"custom_id": "bad", "method": "POST", "url": CHAT, "body": {"model": MODEL}}
    batch = submit(client, jsonl([chat_line("good"), bad]))
    done = wait_for(client, batch.id, {"completed"})

    assert done.request_counts is not None
    assert (done.request_counts.completed, done.request_counts.failed) == (1, 1)
    (err,) = read_jsonl(client, done.error_file_id)
    assert err["custom_id"] == "bad"
    assert err["response"]["status_code"] == 400
    assert err["response"]["body"]["error"]["param"] == "messages"


def test_list_is_newest_first_and_pages(client: openai.OpenAI) -> None:
    ids = [submit(client, chat_file(1, prefix=f"l{i}")).id for i in range(3)]

    page = client.batches.list(limit=2)
    assert [b.id for b in page.data] == ids[::-1][:2]
    assert page.has_more
    after = client.batches.list(limit=1, after=ids[1])
    assert [b.id for b in after.data] == [ids[0]]


def test_cancel_keeps_finished_lines(emu: EmulatorProcess, client: openai.OpenAI) -> None:
    emu.set_knobs(line_latency_seconds=10, batch_concurrency=2, cancelling_seconds=20)
    batch = submit(client, chat_file(100))
    deadline = time.monotonic() + 10
    while True:
        b = client.batches.retrieve(batch.id)
        if b.request_counts and b.request_counts.completed >= 3:
            break
        assert time.monotonic() < deadline, "no progress"
        time.sleep(0.02)

    cancelling = client.batches.cancel(batch.id)
    assert cancelling.status == "cancelling"
    assert cancelling.cancelling_at is not None
    cancelled = wait_for(client, batch.id, {"cancelled"})

    assert cancelled.cancelled_at is not None
    assert cancelled.request_counts is not None
    finished = cancelled.request_counts.completed
    assert 3 <= finished < 100
    lines = read_jsonl(client, cancelled.output_file_id)
    assert len(lines) == finished == len({line["custom_id"] for line in lines})


def test_cancel_while_validating_ends_with_no_files(
    emu: EmulatorProcess, client: openai.OpenAI
) -> None:
    emu.set_knobs(validating_seconds=3600)
    batch = submit(client, chat_file(2))

    assert client.batches.cancel(batch.id).status == "cancelling"
    done = wait_for(client, batch.id, {"cancelled"})
    assert done.output_file_id is None and done.error_file_id is None


def test_cancel_of_a_finished_batch_is_409(client: openai.OpenAI, http: httpx.Client) -> None:
    batch = submit(client, chat_file(1))
    wait_for(client, batch.id, {"completed"})

    with pytest.raises(openai.ConflictError):
        client.batches.cancel(batch.id)
    resp = http.post(f"/batches/{batch.id}/cancel")
    assert resp.status_code == 409
    assert resp.json()["error"]["type"] == "invalid_request_error"


def test_unknown_batch_is_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        client.batches.retrieve("batch_nope")
    with pytest.raises(openai.NotFoundError):
        client.batches.cancel("batch_nope")


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"completion_window": "48h"}, "completion_window"),
        ({"endpoint": "/v1/images/generations"}, "endpoint"),
        ({"metadata": {f"k{i}": "v" for i in range(17)}}, "metadata"),
        ({"metadata": {"k": "v" * 513}}, "metadata"),
        ({"input_file_id": None}, "input_file_id"),
    ],
)
def test_create_rejects_bad_parameters_with_400(
    client: openai.OpenAI, http: httpx.Client, change: dict[str, object], param: str
) -> None:
    body = {
        "input_file_id": upload(client, chat_file(1)),
        "endpoint": CHAT,
        "completion_window": "24h",
        **change,
    }
    resp = http.post("/batches", json=body)

    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["param"] == param


def test_create_needs_an_existing_batch_file(client: openai.OpenAI, http: httpx.Client) -> None:
    with pytest.raises(openai.NotFoundError):
        client.batches.create(input_file_id="file-nope", endpoint=CHAT, completion_window="24h")
    other = client.files.create(file=("x.txt", b"hi"), purpose="user_data").id
    resp = http.post(
        "/batches", json={"input_file_id": other, "endpoint": CHAT, "completion_window": "24h"}
    )
    assert resp.status_code == 400
    assert "purpose" in json.dumps(resp.json())
