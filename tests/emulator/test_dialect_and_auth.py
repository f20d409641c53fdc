"""The Azure dialect's quirks, the key check, and start-up configuration."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from devstack.emulator import EmulatorProcess
from tests.emulator.helpers import chat_file, chat_line, jsonl, read_jsonl, submit, wait_for

AZURE = "?api-version=2025-01-01-preview"


def _azure_batch(http: httpx.Client, data: bytes, endpoint: str) -> dict[str, object]:
    up = http.post(
        "/openai/files" + AZURE, files={"file": ("b.jsonl", data)}, data={"purpose": "batch"}
    )
    assert up.status_code == 201
    created = http.post(
        "/openai/batches" + AZURE,
        json={"input_file_id": up.json()["id"], "endpoint": endpoint, "completion_window": "24h"},
    )
    assert created.status_code == 200, created.text
    body: dict[str, object] = created.json()
    return body


def _poll(http: httpx.Client, batch_id: str, status: str) -> dict[str, object]:
    for _ in range(500):
        body: dict[str, object] = http.get(f"/openai/batches/{batch_id}{AZURE}").json()
        if body["status"] == status:
            return body
        time.sleep(0.02)
    raise AssertionError(f"{batch_id} never reached {status}")


def test_azure_dialect_quirks(emu: EmulatorProcess, http: httpx.Client) -> None:
    emu.set_knobs(dialect="azure", validating_seconds=30)
    rows = [chat_line("a", url="/chat/completions"), chat_line("b", url="/chat/completions")]
    created = _azure_batch(http, jsonl(rows), "/chat/completions")

    assert created["status"] == "Validating"
    assert created["output_file_id"] == "" and created["error_file_id"] == ""
    assert created["request_counts"] is None
    assert created["endpoint"] == "/chat/completions"

    done = _poll(http, str(created["id"]), "Completed")
    assert done["request_counts"] == {"total": 2, "completed": 2, "failed": 0}
    error_file = str(done["error_file_id"])
    assert error_file, "Azure leaves an error file behind even on success"
    assert http.get(f"/openai/files/{error_file}{AZURE}").json()["bytes"] == 0
    assert http.get(f"/openai/files/{error_file}/content{AZURE}").content == b""
    out = http.get(f"/openai/files/{done['output_file_id']}/content{AZURE}").text
    assert sorted(json.loads(line)["custom_id"] for line in out.splitlines()) == ["a", "b"]


def test_azure_statuses_compare_case_insensitively(
    emu: EmulatorProcess, http: httpx.Client
) -> None:
    emu.set_knobs(dialect="azure", line_latency_seconds=50, batch_concurrency=1)
    created = _azure_batch(http, chat_file(30), "/v1/chat/completions")

    running = _poll(http, str(created["id"]), "In_progress")
    assert str(running["status"]).lower() == "in_progress"
    assert running["request_counts"] is not None


def test_openai_dialect_insists_on_v1_urls(client: openai.OpenAI) -> None:
    batch = submit(client, jsonl([chat_line("a", url="/chat/completions")]))

    failed = wait_for(client, batch.id, {"failed"})

    assert failed.errors is not None and failed.errors.data
    assert failed.errors.data[0].code == "url_mismatch"


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    data_dir: Path = tmp_path_factory.mktemp("emulator-keyed")
    knobs = {"auth_header": "apikey", "auth_key": "s3cret", "time_scale": 100}
    with EmulatorProcess(data_dir, knobs=knobs, env={"EMULATOR_DIALECT": "azure"}) as emu:
        yield emu


def test_start_flags_and_env_set_the_knobs(keyed: EmulatorProcess) -> None:
    knobs = keyed.get_knobs()

    # The admin routes need no auth: they say a key is set, never the key.
    assert (knobs["auth_header"], knobs["auth_key"]) == ("apikey", "[set]")
    assert "s3cret" not in json.dumps(knobs)
    assert knobs["dialect"] == "azure"
    assert knobs["time_scale"] == 100


def test_kong_key_auth_header(keyed: EmulatorProcess) -> None:
    with httpx.Client(base_url=keyed.base_url) as http:
        missing = http.get("/batches")
        wrong = http.get("/batches", headers={"apikey": "nope"})
        right = http.get("/batches", headers={"apikey": "s3cret"})
        health = http.get("/_emulator/health")

    assert missing.status_code == wrong.status_code == 401
    assert missing.json()["error"]["code"] == "invalid_api_key"
    assert right.status_code == 200
    assert health.status_code == 200


def test_bearer_auth_through_the_sdk(keyed: EmulatorProcess) -> None:
    keyed.set_knobs(auth_header="Authorization")
    try:
        base = keyed.base_url + "/v1"
        with openai.OpenAI(base_url=base, api_key="wrong", max_retries=0) as bad:
            with pytest.raises(openai.AuthenticationError):
                bad.files.list()
        with openai.OpenAI(base_url=base, api_key="s3cret", max_retries=0) as good:
            file_id = good.files.create(file=("b.jsonl", chat_file(1)), purpose="batch").id
            assert read_jsonl(good, file_id)[0]["custom_id"] == "req-0"
    finally:
        keyed.set_knobs(auth_header="apikey")
